"""The benchmark harness works (`bench/run.py --quick`): no timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "blob_curl",
    "blob_skopeo",
    "small_requests",
    "cold_pulls",
    "concurrency",
    "idle_connections",
}


def test_quick_benchmark_runs_and_reports(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert set(doc["raw"]) == SECTIONS
    assert doc["meta"]["mode"] == "quick"
    assert set(doc["scaling"]) == {"256k", "1m", "4m"}
    for variant in ("direct", "mirror", "peer_cold", "peer_warm", "mirror_tls"):
        assert doc["raw"]["blob_curl"]["4m"][variant], variant
    for n in ("4", "8"):
        assert all(r["verified"] == int(n) for r in doc["raw"]["concurrency"][n]["mirror"])
    idle = doc["raw"]["idle_connections"]["100"]
    assert all(r["verified"] == 8 and r["rss_idle"] > 0 for r in idle["mirror"])
    pulls = doc["raw"]["cold_pulls"]
    assert all(pulls[t][0]["round_trips"]["manifest"] > 0 for t in ("direct", "mirror", "peer"))
    assert {t["name"] for t in doc["targets"]} >= {
        "blob throughput (curl), mirror/direct",
        "manifest HEAD p50 overhead over direct",
        "upstream round trips per cold pull, mirror vs peer",
    }
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    assert "| target | goal | measured | ratio | result |" in res.stdout
    assert list(tmp_path.glob("bench-*.png"))

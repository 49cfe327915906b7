"""The benchmark harness works (`bench/run.py --quick`): no timing is asserted. Then its
pure parts: how upstream requests are counted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import ROUND_TRIP_KINDS, request_kind, round_trip_kinds

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "blob_curl",
    "blob_skopeo",
    "small_requests",
    "cold_pulls",
    "concurrency",
    "idle_connections",
}


@pytest.mark.e2e
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


# ------------------------------------------------------------------------------------------
# counting upstream requests
# ------------------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/v2/", 401, "GET ping"),
        ("GET", "/v2", 200, "GET ping"),
        ("HEAD", "/v2/library/multi/manifests/1", 200, "HEAD manifest by tag"),
        ("GET", "/v2/library/multi/manifests/latest?ns=docker.io", 200, "GET manifest by tag"),
        ("GET", f"/v2/bench/multi-0/manifests/{DIGEST}", 200, "GET manifest by digest"),
        ("HEAD", f"/v2/a/b/c/manifests/{DIGEST}", 404, "HEAD manifest by digest"),
        ("GET", f"/v2/bench/blob-1g/blobs/{DIGEST}", 200, "GET blob"),
        ("GET", f"/v2/bench/blob-1g/blobs/{DIGEST}", 401, "GET blob (401)"),
        ("GET", "/v2/library/multi/manifests/1", 401, "GET manifest by tag (401)"),
        ("POST", "/v2/bench/x/blobs/uploads/", 202, "POST other"),
        ("GET", "/v2/_catalog", 200, "GET other"),
        ("GET", "/v2/bench/x/tags/list", 401, "GET other (401)"),
    ],
)
def test_request_kind(method, path, status, kind):
    assert request_kind(method, path, status) == kind


def test_round_trip_kinds_fold_request_kinds():
    requests = {
        "GET ping": 1,
        "token": 2,
        "HEAD manifest by tag": 1,
        "GET manifest by digest": 2,
        "GET blob": 3,
        "HEAD blob": 1,
        "GET blob (401)": 4,
        "GET other": 1,
    }
    assert round_trip_kinds(requests) == {
        "ping": 1,
        "challenge": 4,
        "token": 2,
        "manifest": 3,
        "blob": 4,
        "other": 1,
    }
    assert round_trip_kinds({}) == dict.fromkeys(ROUND_TRIP_KINDS, 0)

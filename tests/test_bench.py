"""The benchmark harness works (`bench/run.py --quick`): no timing is asserted. Then its
pure parts: how upstream requests are counted, and the cache's figures and targets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cache_report, data_plane_report
from bench.measure import ROUND_TRIP_KINDS, request_kind, round_trip_kinds
from bench.plan import FULL, QUICK, MiB
from bench.scenarios import CACHED_HEAD
from bench.stack import metric_value, served_by_data_plane
from tests.test_bench_s3 import check_quick_s3

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "blob_curl",
    "blob_skopeo",
    "small_requests",
    "cold_pulls",
    "concurrency",
    "single_flight",
    "idle_connections",
    "s3",
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
    # the caching mirror: a fill from upstream, then a hit that never leaves the mirror
    # (skopeo fetches the config and the layer)
    for section, blobs in (
        (doc["raw"]["blob_curl"]["4m"], 1),
        (doc["raw"]["blob_skopeo"]["4m"], 2),
    ):
        assert all(r["upstream"].get("GET blob") == blobs for r in section["mirror_cache_cold"])
        assert all(r["upstream"].get("GET blob", 0) == 0 for r in section["mirror_cache_warm"])
        for variant in ("mirror_cache_cold", "peer_cold"):
            assert all(r["store_wait_s"] >= 0 for r in section[variant]), variant
        assert all(r["upstream"].get("GET blob", 0) == 0 for r in section["peer_warm"])
    flight = doc["raw"]["single_flight"]["8"]
    for variant in ("direct", "mirror_cache_cold", "mirror_cache_warm", "peer_cold", "peer_warm"):
        assert flight[variant] and all(r["verified"] == 8 for r in flight[variant]), variant
    assert flight["direct"][0]["upstream"]["GET blob"] == 8  # the clients' own
    assert all(r["upstream"].get("GET blob", 0) == 0 for r in flight["mirror_cache_warm"])
    again = doc["raw"]["cold_pulls"]["mirror_cache_again"]
    assert again and all(r["requests"].get("GET blob", 0) == 0 for r in again)
    assert {r["figure"] for r in doc["cache"]["summary"]} >= {
        "4 MiB blob, curl throughput",
        "multi-arch image pull (skopeo --all)",
    }
    assert "GET manifest by tag" in doc["cache"]["requests"]
    assert len(doc["cache"]["targets"]) == 6
    # the data plane: filled once through the API port, then every warm blob GET a 307 that
    # curl and skopeo follow; the data plane serves it (its log) and nothing goes upstream
    dp_curl = doc["raw"]["blob_curl"]["4m"]
    dp_skopeo = doc["raw"]["blob_skopeo"]["4m"]
    dp_conc = doc["raw"]["concurrency"]["8"]
    for section, served in ((dp_curl, 1), (dp_skopeo, 1), (dp_conc, 8)):
        (cold,) = section["mirror_dp_cold"]
        assert cold["upstream"].get("GET blob", 0) > 0 and cold["data_plane_transfers"] == 0
        warm = section["mirror_dp_warm"]
        assert len(warm) == 1 and warm[0]["data_plane_transfers"] == served
        assert warm[0]["upstream"].get("GET blob", 0) == 0
    assert dp_curl["mirror_dp_warm"][0]["redirects"] == 1
    assert dp_conc["mirror_dp_warm"][0]["redirects"] == 8
    assert "mirror_dp_warm" not in doc["raw"]["concurrency"]["4"]
    dp = doc["cache"]["data_plane"]
    assert len(dp["targets"]) == 8
    thr = next(r for r in dp["summary"] if r["figure"] == "4 MiB blob, curl throughput")
    assert thr["values"]["dp_warm"] > 0 and thr["ratios"]["dp_warm/direct"] > 0
    assert len(doc["meta"]["load"]["start"]) == 3
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
    assert "| upstream requests, one multi-arch pull |" in res.stdout
    assert list(tmp_path.glob("bench-*.png"))
    check_quick_s3(doc, res.stdout)


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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("# HELP x\nregmirror_cache_size_bytes 1.073741824e+09\n", 1073741824.0),
        ("regmirror_cache_size_bytes 0.0", 0.0),
        ("regmirror_cache_size_bytes_total 5\n", None),  # another metric's name
        ('regmirror_cache_lookups_total{result="hit"} 3.0\n', None),
        ("", None),
    ],
)
def test_metric_value(text, value):
    assert metric_value(text, "regmirror_cache_size_bytes") == value


# ------------------------------------------------------------------------------------------
# the cache's figures and targets
# ------------------------------------------------------------------------------------------


def blob_record(seconds: float, rss_mb: float, **extra) -> dict:
    size = QUICK.big
    return {"seconds": seconds, "bytes": size, "mb_per_s": size / seconds / 1e6,
            "front_cpu_s_per_gib": 1.0, "front_peak_rss": rss_mb * 1e6, **extra}  # fmt: skip


def pull_record(seconds: float, requests: dict[str, int]) -> dict:
    return {"seconds": seconds, "requests": requests, "total": sum(requests.values())}


def synthetic_raw(again: list[dict[str, int]], flight_gets: list[int], rss_mb: float) -> dict:
    """What the scenarios return, with only what cache_report reads."""
    cold = {"GET blob": 1}
    blobs = {
        "direct": [blob_record(0.01, 40)],
        "mirror_cache_cold": [blob_record(0.04, rss_mb, upstream=cold, store_wait_s=0.3)],
        "mirror_cache_warm": [blob_record(0.02, 90, upstream={})],
        "peer_cold": [blob_record(0.05, 25, upstream={"GET blob": 2})],
        "peer_warm": [blob_record(0.01, 26, upstream={})],
        "peer_tls_cold": [blob_record(0.08, 30, upstream={"GET blob": 2})],
        "peer_tls_warm": [blob_record(0.04, 30, upstream={})],
    }
    tag = {"GET manifest by tag": 1}
    pulls = {
        "direct": [pull_record(0.1, {})],
        "mirror_again": [pull_record(0.2, {**tag, "GET blob": 6})],
        "mirror_cache": [pull_record(0.3, {**tag, "GET blob": 6})],
        "mirror_cache_again": [pull_record(0.1, r) for r in again],
        "peer": [pull_record(0.5, {"token": 9, "GET blob": 12})],
        "peer_again": [pull_record(0.1, {"token": 1, "HEAD manifest by tag": 1})],
    }
    flight = {
        "direct": [blob_record(0.1, 50, upstream={"GET blob": 8})],
        "mirror_cache_cold": [blob_record(0.2, 99, upstream={"GET blob": n}) for n in flight_gets],
        "mirror_cache_warm": [blob_record(0.1, 99, upstream={})],
        "peer_cold": [blob_record(0.1, 30, upstream={"GET blob": 8})],
        "peer_warm": [blob_record(0.1, 30, upstream={})],
    }
    return {
        "blob_curl": {"4m": blobs},
        "blob_skopeo": {"4m": blobs},
        "cold_pulls": pulls,
        "single_flight": {"8": flight},
    }


def test_cache_rows_put_each_variant_in_its_column():
    raw = synthetic_raw([{"HEAD manifest by tag": 1}], [1], 120)
    rows = {r.figure: r for r in cache_report.summarize(raw, QUICK)}
    thr = rows["4 MiB blob, curl throughput"]
    assert thr.ratio("cache_warm", "direct") == pytest.approx(0.5)
    assert thr.ratio("cache_cold", "peer_cold") == pytest.approx(0.05 / 0.04)
    assert rows["4 MiB blob, curl: upstream blob GETs"].values == {
        "direct": None, "cache_cold": 1, "cache_warm": 0, "peer_cold": 2, "peer_warm": 0,
    }  # fmt: skip
    tls = rows["4 MiB blob, skopeo copy to dir:, peer over TLS too"].values
    assert (tls["peer_cold"], tls["peer_warm"]) == (0.08, 0.04)
    pull = rows["multi-arch image pull (skopeo --all)"].values
    assert pull == {
        "direct": 0.1, "cache_cold": 0.3, "cache_warm": 0.1, "peer_cold": 0.5, "peer_warm": 0.1,
    }  # fmt: skip
    assert rows["multi-arch image pull: upstream round trips"].values["peer_cold"] == 21
    stored = rows["4 MiB blob, curl: stored, after the client's last byte"].values
    assert (stored["cache_cold"], stored["cache_warm"]) == (0.3, None)
    flight = rows["8 clients at once, one 1 MiB blob: upstream blob GETs"].values
    assert (flight["direct"], flight["cache_cold"], flight["peer_cold"]) == (8, 1, 8)


def test_request_table_lists_known_kinds_first_and_missing_ones_as_zero():
    raw = synthetic_raw([{"HEAD manifest by tag": 1, "GET other": 1}], [1], 120)
    table = cache_report.request_table(raw)
    assert list(table) == [
        "token", "HEAD manifest by tag", "GET manifest by tag", "GET blob", "GET other",
    ]  # fmt: skip
    assert table["GET blob"] == {
        "mirror (no cache), again": 6,
        "mirror cache cold": 6,
        "mirror cache warm": 0,
        "peer cold": 12,
        "peer warm": 0,
    }
    text = cache_report.markdown(cache_report.summarize(raw, QUICK), table)
    assert "| GET blob | 6 | 6 | 0 | 12 | 0 |" in text
    assert "mirror cache warm/direct" in text.splitlines()[0]


@pytest.mark.parametrize(
    ("again", "flight_gets", "rss_mb", "met"),
    [
        # the goal: one HEAD per tag, nothing else; one upstream GET for 8 clients
        ([{"HEAD manifest by tag": 1}], [1, 1], 120, [True, True, True, True, True, True]),
        # today's mirror: the tag GET goes upstream
        ([{"GET manifest by tag": 1}], [1], 120, [False, True, True, True, True, True]),
        # the worst repetition counts
        (
            [{"HEAD manifest by tag": 1}, {"HEAD manifest by tag": 1, "GET blob": 1}],
            [1, 8],
            160,
            [True, True, False, False, False, True],
        ),
        (
            [{"HEAD manifest by tag": 2, "GET manifest by digest": 1}],
            [1],
            120,
            [False, False, True, True, True, True],
        ),
    ],
)
def test_cache_targets(again, flight_gets, rss_mb, met):
    targets = cache_report.targets(synthetic_raw(again, flight_gets, rss_mb), QUICK)
    assert [t.met for t in targets] == met
    assert targets[3].measured == f"{max(flight_gets)} (peer 8)"
    assert targets[4].measured == f"{rss_mb} MB"


# ------------------------------------------------------------------------------------------
# the data plane's figures and targets
# ------------------------------------------------------------------------------------------


def test_served_by_data_plane_counts_its_transfers_only():
    log = "\n".join([
        "pull blob docker.io/bench/x@sha256:ab… -> 307 127.0.0.1:4 by data plane cache hit",
        "pull blob docker.io/bench/x@sha256:ab… via data plane -> 200 cache hit 4.2 MB 3 ms",
        "pull blob docker.io/bench/x@sha256:ab… via data plane (TLS) -> 200 cache hit 4.2 MB",
        "pull blob docker.io/bench/x@sha256:ab… via data plane -> 206 cache hit 1.0 MB 1 ms",
        "request GET /blobs/sha256:ab via data plane -> 403 DENIED (blob URL expired)",
        "regmirror: blob data plane listening on 127.0.0.1:4",
    ])  # fmt: skip
    assert served_by_data_plane(log) == 3


def test_redirect_min_is_the_default_unless_the_concurrency_blobs_are_smaller():
    assert FULL.redirect_min == MiB  # 8 MiB blobs: regmirror's default
    assert QUICK.redirect_min == QUICK.concurrent_blob == 256 * 1024


def dp_raw(dp_s: float, dp_cpu: float, dp_rss: float, conc_s: float) -> dict:
    """synthetic_raw with the data plane's records (QUICK: 4 MiB; 8 clients at most)."""
    raw = synthetic_raw([{"HEAD manifest by tag": 1}], [1], 120)
    dp = blob_record(dp_s, dp_rss, front_cpu_s_per_gib=dp_cpu, upstream={})
    for section in ("blob_curl", "blob_skopeo"):
        raw[section]["4m"] = {**raw[section]["4m"], "mirror_dp_warm": [dp]}
    conc = {"direct": [blob_record(0.1, 40)], "peer_warm": [blob_record(0.2, 30)]}
    raw["concurrency"] = {
        "4": {"direct": [blob_record(0.5, 40)]},
        "8": {**conc, "mirror_dp_warm": [blob_record(conc_s, 90)]},
    }
    return raw


def test_data_plane_rows_and_ratios():
    rows = {r.figure: r for r in data_plane_report.summarize(dp_raw(0.008, 0.2, 60, 0.1), QUICK)}
    thr = rows["4 MiB blob, curl throughput"]
    assert thr.ratio("dp_warm", "direct") == pytest.approx(0.01 / 0.008)
    assert thr.ratio("dp_warm", "cache_warm") == pytest.approx(0.02 / 0.008)
    assert rows["4 MiB blob, curl: serving process CPU"].values["dp_warm"] == 0.2
    tls = rows["4 MiB blob, skopeo copy to dir:, peer over TLS too"].values
    assert (tls["dp_warm"], tls["peer_warm"]) == (0.008, 0.04)
    many = rows["8 clients at once, 8 cached 256 KiB blobs: aggregate"].values
    assert many["cache_warm"] is None and many["peer_warm"] == pytest.approx(QUICK.big / 0.2 / 1e6)
    text = data_plane_report.markdown(list(rows.values()))
    assert "mirror data plane warm/peer warm" in text.splitlines()[0]


@pytest.mark.parametrize(
    ("dp_s", "dp_cpu", "dp_rss", "conc_s", "met"),
    [
        # direct 0.01 s and 1.0 s/GiB, peer warm 0.01 s (curl) and 0.04 s over TLS (skopeo);
        # the fill 0.04 s (0.25x direct, never met here); 8 clients direct 0.1 s
        (0.005, 1.0, 90, 0.1, [True, True, True, True, False, True, True, False]),
        (0.01, 1.1, 150, 0.11, [True, False, False, True, False, False, False, False]),
        (0.05, 0.5, 60, 0.05, [False, False, True, False, False, True, True, False]),
    ],
)
def test_data_plane_targets(dp_s, dp_cpu, dp_rss, conc_s, met):
    targets = data_plane_report.targets(dp_raw(dp_s, dp_cpu, dp_rss, conc_s), QUICK)
    assert [t.met for t in targets] == met
    assert targets[0].ratio == pytest.approx(0.01 / dp_s)
    assert targets[3].goal == "<= 1.0x"
    assert targets[3].measured == f"{dp_s:.2f} vs 0.01 s"  # the plain-HTTP peer
    assert targets[5].measured == f"{QUICK.big / conc_s / 1e6:,.0f} vs 42 MB/s"
    assert targets[6].measured == f"{dp_rss} MB"
    assert targets[7].measured == "-"  # no manifest HEADs from the cache measured


@pytest.mark.parametrize(("cached_ms", "met"), [(2.4, True), (2.6, False)])
def test_the_cached_manifest_head_target(cached_ms, met):
    raw = dp_raw(0.005, 1.0, 90, 0.1)
    heads = {"direct": {"p50_ms": 1.6}, "mirror_cache": {"p50_ms": cached_ms}}
    raw["small_requests"] = {**raw.get("small_requests", {}), CACHED_HEAD: heads}
    target = data_plane_report.targets(raw, QUICK)[7]
    assert target.met is met and target.goal == "< 1 ms"
    assert target.measured == f"{cached_ms - 1.6:+.2f} ms ({cached_ms:.2f} vs 1.60)"


def test_data_plane_targets_are_not_met_when_not_measured():
    raw = synthetic_raw([{"HEAD manifest by tag": 1}], [1], 120)
    raw["concurrency"] = {"8": {"direct": [blob_record(0.1, 40)]}}
    targets = data_plane_report.targets(raw, QUICK)
    assert [t.met for t in targets] == [False] * 8
    assert targets[0].measured == "-" and targets[0].ratio is None

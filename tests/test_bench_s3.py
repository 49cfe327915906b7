"""The S3 cache's and the replicas' bench section (bench/s3_scenarios.py): what the quick run
must show (checked by test_bench's run, no timing asserted), and the report's pure parts."""

import pytest

from bench import s3_report
from bench.plan import QUICK

GIB = 1 << 30


def check_quick_s3(doc: dict, stdout: str) -> None:
    """The quick run's s3 section: each cache filled once from the upstream, then hit with
    nothing upstream; the S3 redirect and the data plane answer with a 307 that curl
    follows, the streamed S3 hit does not; every client's blob verified, and haproxy
    spreading the clients over both replicas."""
    hit = doc["raw"]["s3"]["hit"]["4m"]
    for cache in ("mirror_cache", "mirror_dp", "mirror_s3", "mirror_s3_redirect"):
        (cold,) = hit[f"{cache}_cold"]
        assert cold["upstream"].get("GET blob") == 1 and cold["store_wait_s"] >= 0, cache
        warm = hit[f"{cache}_warm"]
        assert len(warm) == QUICK.reps and all(r["upstream"] == {} for r in warm), cache
        follows = cache in ("mirror_dp", "mirror_s3_redirect")
        assert all(r["redirects"] == (1 if follows else 0) for r in warm), cache
    assert all(r["s3_cpu_s"] >= 0 for r in hit["mirror_s3_redirect_warm"])
    ((n, backends),) = doc["raw"]["s3"]["replicas"].items()
    assert n == "8" and set(backends) == {"s3", "dir"}
    for backend, section in backends.items():
        (fill,) = section["fill"]
        assert fill["upstream"].get("GET blob") == 8, backend
        for target in ("one", "one_haproxy", "replicas"):
            assert all(r["verified"] == 8 and r["upstream"] == {} for r in section[target])
        assert section["one"][0]["served_by"] == {"": 8}  # no haproxy in between
        assert section["one_haproxy"][0]["served_by"] == {"replica1": 8}
        served = section["replicas"][0]["served_by"]
        assert set(served) == {"replica1", "replica2"} and sum(served.values()) == 8
        assert served == section["replicas"][0]["tokens_by"]  # a client stays on its replica
    figures = {r["figure"] for r in doc["cache"]["s3"]["hit"]}
    assert "4 MiB blob hit, curl throughput" in figures
    assert "| figure | unit | one process | one process via haproxy |" in stdout


def record(seconds: float, size: int = QUICK.big, **extra) -> dict:
    return {"seconds": seconds, "bytes": size, "mb_per_s": size / seconds / 1e6, **extra}


def synthetic_raw() -> dict:
    """What s3_scenarios returns, with only what s3_report reads."""
    hit = {"direct": [record(0.01)]}
    seconds = {"mirror_cache": (0.04, 0.02), "mirror_dp": (0.04, 0.01),
               "mirror_s3": (0.08, 0.04), "mirror_s3_redirect": (0.08, 0.05)}  # fmt: skip
    for cache, (cold, warm) in seconds.items():
        hit[f"{cache}_cold"] = [record(cold, store_wait_s=0.1)]
        hit[f"{cache}_warm"] = [record(warm, front_cpu_s_per_gib=1.0, s3_cpu_s_per_gib=2.0,
                                       front_peak_rss=80e6, s3_peak_rss=300e6)]  # fmt: skip
    size = 8 * QUICK.concurrent_blob

    def many(seconds: float, replica2: int) -> dict:
        return record(seconds, size, served_by={"replica1": 8 - replica2, "replica2": replica2},
                      upstream={}, replica1_cpu_s=size / GIB, replica2_cpu_s=size / GIB,
                      haproxy_cpu_s=0.0, s3_cpu_s=2 * size / GIB)  # fmt: skip

    backend = {"one": [many(0.4, 0)], "one_haproxy": [many(0.5, 0)], "replicas": [many(0.2, 3)]}
    return {"s3": {"hit": {"4m": hit}, "replicas": {"8": {"s3": backend, "dir": backend}}}}


def test_hit_rows_compare_s3_with_the_disk_cache():
    rows = {r.figure: r for r in s3_report.hit_rows(synthetic_raw(), QUICK)}
    thr = rows["4 MiB blob hit, curl throughput"]
    assert thr.ratio("s3", "disk") == pytest.approx(0.02 / 0.04)
    assert thr.ratio("s3_redirect", "s3") == pytest.approx(0.04 / 0.05)
    moto = rows["4 MiB blob hit: S3 server (moto) CPU"].values
    assert moto == {"s3": 2.0, "s3_redirect": 2.0}  # the other columns: "-"
    fill = rows["4 MiB blob fill (fresh process), curl throughput"]
    assert fill.ratio("s3", "disk") == pytest.approx(0.04 / 0.08)
    assert fill.values["direct"] == pytest.approx(QUICK.big / 0.01 / 1e6)


def test_replica_rows_and_the_markdown():
    raw = synthetic_raw()
    rows = {r.figure: r for r in s3_report.replica_rows(raw, QUICK)}
    what = "8 clients x 256 KiB cached"
    agg = rows[f"{what}, one bucket: aggregate"]
    assert agg.ratio("replicas", "one") == pytest.approx(2.0)
    assert rows[f"{what}, one bucket: CPU of the mirrors"].values["one"] == pytest.approx(2.0)
    assert rows[f"{what}, one bucket: CPU of the S3 server (moto)"].values["replicas"] == 2.0
    assert f"{what}, one directory: CPU of the S3 server (moto)" not in rows
    assert rows[f"{what}, one directory: clients answered by replica 2"].values == {
        "one": 0, "one_haproxy": 0, "replicas": 3,
    }  # fmt: skip
    text = s3_report.markdown(raw, QUICK)
    assert "2 replicas via haproxy/one process" in text and "moto" in text.splitlines()[-1]
    assert s3_report.summary(raw, QUICK)["replicas"][0]["ratios"]["replicas/one"] == 2.0

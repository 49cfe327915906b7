"""The blob data plane's figures and targets (issue 11 item 4) from the raw results: the
caching mirror with `regmirror_blob_listen` on, warm ("mirror_dp_warm": every large blob GET
a 307 to the data plane), beside direct, the same hit through mitmproxy ("mirror_cache_warm")
and distribution's proxy warm, measured in the same interleaved runs (scenarios.py)."""

from __future__ import annotations

from typing import Any

from .cache_report import CacheRow, Records, aggregate, key, per_variant, table
from .plan import Plan, human_bytes, size_label
from .report import MB, Target
from .scenarios import CACHED_HEAD
from .stack import CACHED

VARIANTS = ("direct", "cache_warm", "dp_warm", "peer_warm")
HEADERS = ("direct", "mirror cache warm", "mirror data plane warm", "peer warm")
RATIOS = (("dp_warm", "direct"), ("dp_warm", "peer_warm"), ("dp_warm", "cache_warm"))
KEYS = {
    "direct": "direct",
    "cache_warm": "mirror_cache_warm",
    "dp_warm": "mirror_dp_warm",
    "peer_warm": "peer_warm",
}
TLS_PEER_KEYS = {**KEYS, "peer_warm": "peer_tls_warm"}
# issue 11 item 4
GOAL_HIT_DIRECT = 1.0  # 1 GiB curl hit / direct, at least
GOAL_HIT_PEER = 1.5  # 1 GiB curl hit / peer warm, at least
GOAL_CPU = 1.0  # serving CPU per GiB on a hit / direct's, at most
GOAL_SKOPEO = 1.0  # skopeo warm 1 GiB pull time / peer warm, at most
GOAL_FILL = 0.8  # 1 GiB fill / direct, at least
GOAL_CONCURRENT = 1.0  # many clients, cached blobs, aggregate / direct, at least
GOAL_RSS_MB = 150.0  # peak RSS at 1 GiB, below
GOAL_CACHED_HEAD_MS = 1.0  # manifest HEAD answered from the cache, p50 over direct, below


def _concurrent(raw: dict[str, Any]) -> tuple[str, dict[str, Records]]:
    """The concurrency run with the data plane in it (the largest number of clients)."""
    n = max(raw["concurrency"], key=int)
    return n, raw["concurrency"][n]


def summarize(raw: dict[str, Any], plan: Plan) -> list[CacheRow]:
    big_h = human_bytes(plan.big)
    curl = raw["blob_curl"][size_label(plan.big)]
    skopeo = raw["blob_skopeo"][size_label(plan.big)]
    n, conc = _concurrent(raw)
    many = f"{n} clients at once, {n} cached {human_bytes(plan.concurrent_blob)} blobs"
    cpu = key("front_cpu_s_per_gib")
    return [
        CacheRow(
            f"{big_h} blob, curl throughput", "MB/s", per_variant(curl, KEYS, key("mb_per_s")), 0
        ),
        CacheRow(f"{big_h} blob, curl: serving process CPU", "s/GiB", per_variant(curl, KEYS, cpu)),
        CacheRow(
            f"{big_h} blob, curl: serving process peak RSS",
            "MB",
            per_variant(curl, KEYS, key("front_peak_rss", MB), "max"),
            0,
        ),
        CacheRow(
            f"{big_h} blob, skopeo copy to dir: (mirror over TLS)",
            "s",
            per_variant(skopeo, KEYS, key("seconds")),
        ),
        CacheRow(
            f"{big_h} blob, skopeo copy to dir:, peer over TLS too",
            "s",
            per_variant(skopeo, TLS_PEER_KEYS, key("seconds")),
        ),
        CacheRow(
            f"{big_h} blob, skopeo: serving process CPU", "s/GiB", per_variant(skopeo, KEYS, cpu)
        ),
        CacheRow(f"{many}: aggregate", "MB/s", per_variant(conc, KEYS, key("mb_per_s")), 0),
        CacheRow(f"{many}: serving process CPU", "s/GiB", per_variant(conc, KEYS, cpu)),
    ]


DIGITS = {"MB/s": 0}  # in "measured"; 2 for other units


def _ratio_target(
    name: str, top: float | None, base: float | None, unit: str, goal: float, at_least: bool
) -> Target:
    """A target on top/base: at least (or at most) `goal`; not met when either is missing."""
    ratio = top / base if top is not None and base else None
    d = DIGITS.get(unit, 2)
    measured = "-" if top is None or base is None else f"{top:,.{d}f} vs {base:,.{d}f} {unit}"
    met = ratio is not None and (ratio >= goal if at_least else ratio <= goal)
    return Target(name, f"{'>=' if at_least else '<='} {goal:.1f}x", measured, ratio, met)


def targets(raw: dict[str, Any], plan: Plan) -> list[Target]:
    """Issue 11's targets, on medians; peak RSS the maximum over curl's and skopeo's hits."""
    big = size_label(plan.big)
    big_h = human_bytes(plan.big)
    curl, skopeo = raw["blob_curl"][big], raw["blob_skopeo"][big]
    n, conc = _concurrent(raw)

    def med(section: dict[str, Records], name: str, field: str) -> float | None:
        return aggregate(section.get(name, []), key(field))

    hit = med(curl, "mirror_dp_warm", "mb_per_s")
    peak = aggregate(
        [*curl.get("mirror_dp_warm", []), *skopeo.get("mirror_dp_warm", [])],
        key("front_peak_rss", MB),
        "max",
    )
    return [
        _ratio_target(
            f"data plane hit, {big_h} curl throughput / direct",
            hit, med(curl, "direct", "mb_per_s"), "MB/s", GOAL_HIT_DIRECT, True,
        ),
        _ratio_target(
            f"data plane hit, {big_h} curl throughput / peer warm",
            hit, med(curl, "peer_warm", "mb_per_s"), "MB/s", GOAL_HIT_PEER, True,
        ),
        _ratio_target(
            f"data plane hit, {big_h} curl: serving CPU per GiB / direct's",
            med(curl, "mirror_dp_warm", "front_cpu_s_per_gib"),
            med(curl, "direct", "front_cpu_s_per_gib"), "s/GiB", GOAL_CPU, False,
        ),
        _ratio_target(
            f"data plane hit, skopeo warm {big_h} pull time / peer warm",
            med(skopeo, "mirror_dp_warm", "seconds"),
            med(skopeo, "peer_warm", "seconds"), "s", GOAL_SKOPEO, False,
        ),
        _ratio_target(
            f"fill (miss) of {big_h}, curl throughput / direct",
            med(curl, "mirror_cache_cold", "mb_per_s"),
            med(curl, "direct", "mb_per_s"), "MB/s", GOAL_FILL, True,
        ),
        _ratio_target(
            f"data plane, {n} clients x {human_bytes(plan.concurrent_blob)} cached: aggregate "
            "/ direct",
            med(conc, "mirror_dp_warm", "mb_per_s"),
            med(conc, "direct", "mb_per_s"), "MB/s", GOAL_CONCURRENT, True,
        ),
        Target(
            f"data plane peak RSS while {big_h} is served (curl, skopeo)",
            f"< {GOAL_RSS_MB:.0f} MB",
            "-" if peak is None else f"{peak:.0f} MB",
            None if peak is None else peak / GOAL_RSS_MB,
            peak is not None and peak < GOAL_RSS_MB,
        ),
        _cached_head_target(raw),
    ]  # fmt: skip


def _cached_head_target(raw: dict[str, Any]) -> Target:
    heads = raw.get("small_requests", {}).get(CACHED_HEAD, {})
    direct, cached = (heads.get(t, {}).get("p50_ms") for t in ("direct", CACHED))
    over = None if direct is None or cached is None else cached - direct
    return Target(
        "manifest HEAD by digest from the cache, p50 overhead over direct",
        f"< {GOAL_CACHED_HEAD_MS:.0f} ms",
        "-" if over is None else f"{over:+.2f} ms ({cached:.2f} vs {direct:.2f})",
        None if over is None or not direct else cached / direct,
        over is not None and over < GOAL_CACHED_HEAD_MS,
    )


def markdown(rows: list[CacheRow]) -> str:
    return "\n".join(table(rows, VARIANTS, HEADERS, RATIOS)) + "\n"

"""The pull-through cache's figures (issue 10) from the raw results: the caching mirror,
cold and warm, beside direct and distribution's proxy (the peer), cold and warm, measured in
the same interleaved runs as the pass-through figures (scenarios.py)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .plan import Plan, human_bytes, size_label
from .report import MB, Target, _fmt, _fmt_ratio

VARIANTS = ("direct", "cache_cold", "cache_warm", "peer_cold", "peer_warm")
HEADERS = ("direct", "mirror cache cold", "mirror cache warm", "peer cold", "peer warm")
RATIOS = (("cache_warm", "direct"), ("cache_warm", "peer_warm"), ("cache_cold", "peer_cold"))
# raw keys of each variant: blob sections (scenarios._each_target) and cold_pulls
BLOB_KEYS = {
    "direct": "direct",
    "cache_cold": "mirror_cache_cold",
    "cache_warm": "mirror_cache_warm",
    "peer_cold": "peer_cold",
    "peer_warm": "peer_warm",
}
TLS_PEER_KEYS = {**BLOB_KEYS, "peer_cold": "peer_tls_cold", "peer_warm": "peer_tls_warm"}
PULL_KEYS = {
    "direct": "direct",
    "cache_cold": "mirror_cache",
    "cache_warm": "mirror_cache_again",
    "peer_cold": "peer",
    "peer_warm": "peer_again",
}
# the upstream's requests of one multi-arch pull, by column (cold_pulls)
REQUEST_COLUMNS = {
    "mirror (no cache), again": "mirror_again",
    "mirror cache cold": "mirror_cache",
    "mirror cache warm": "mirror_cache_again",
    "peer cold": "peer",
    "peer warm": "peer_again",
}
REQUEST_ORDER = (
    "GET ping",
    "token",
    "HEAD manifest by tag",
    "GET manifest by tag",
    "HEAD manifest by digest",
    "GET manifest by digest",
    "HEAD blob",
    "GET blob",
)
TAGS_PER_PULL = 1  # the multi-arch image is pulled by one tag
GOAL_RSS_MB = 150.0  # issue 10 item 4: while a 1 GiB blob is served or filled

Records = Sequence[dict[str, Any]]
Getter = Callable[[dict[str, Any]], float | None]


@dataclass
class CacheRow:
    figure: str
    unit: str
    values: dict[str, float | None]  # by variant
    digits: int = 2

    def ratio(self, numerator: str, denominator: str) -> float | None:
        top, base = self.values.get(numerator), self.values.get(denominator)
        if top is None or not base:
            return None
        return top / base


def key(name: str, scale: float = 1.0) -> Getter:
    def get(record: dict[str, Any]) -> float | None:
        return None if name not in record else record[name] / scale

    return get


def upstream(kind: str) -> Getter:
    """How many requests of `kind` (measure.request_kind) the upstream saw; None where they
    were not counted."""

    def get(record: dict[str, Any]) -> float | None:
        counted = record.get("upstream", record.get("requests"))
        return None if counted is None else float(counted.get(kind, 0))

    return get


def aggregate(records: Records, get: Getter, how: str = "median") -> float | None:
    values = [v for r in records if (v := get(r)) is not None]
    if not values:
        return None
    return float(max(values) if how == "max" else statistics.median(values))


def per_variant(
    section: dict[str, Records], keys: dict[str, str], get: Getter, how: str = "median"
) -> dict[str, float | None]:
    """By variant (the keys of `keys`), `how` of `get` over the records of its raw key."""
    return {v: aggregate(section.get(k, []), get, how) for v, k in keys.items()}


def _flight(raw: dict[str, Any]) -> tuple[str, dict[str, Records]]:
    ((n, section),) = raw["single_flight"].items()
    return n, section


def summarize(raw: dict[str, Any], plan: Plan) -> list[CacheRow]:
    big_h = human_bytes(plan.big)
    curl = raw["blob_curl"][size_label(plan.big)]
    skopeo = raw["blob_skopeo"][size_label(plan.big)]
    pulls = raw["cold_pulls"]
    n, flight = _flight(raw)
    flight_h = human_bytes(plan.flight_blob)
    rss = key("front_peak_rss", MB)
    return [
        CacheRow(
            f"{big_h} blob, curl throughput",
            "MB/s",
            per_variant(curl, BLOB_KEYS, key("mb_per_s")),
            0,
        ),
        CacheRow(
            f"{big_h} blob, curl: upstream blob GETs",
            "count",
            per_variant(curl, BLOB_KEYS, upstream("GET blob")),
            0,
        ),
        CacheRow(
            f"{big_h} blob, curl: serving process CPU",
            "s/GiB",
            per_variant(curl, BLOB_KEYS, key("front_cpu_s_per_gib")),
        ),
        CacheRow(
            f"{big_h} blob, curl: serving process peak RSS",
            "MB",
            per_variant(curl, BLOB_KEYS, rss, "max"),
            0,
        ),
        CacheRow(
            f"{big_h} blob, curl: stored, after the client's last byte",
            "s",
            per_variant(curl, BLOB_KEYS, key("store_wait_s")),
        ),
        CacheRow(
            f"{big_h} blob, skopeo copy to dir: (mirror over TLS)",
            "s",
            per_variant(skopeo, BLOB_KEYS, key("seconds")),
        ),
        CacheRow(
            f"{big_h} blob, skopeo copy to dir:, peer over TLS too",
            "s",
            per_variant(skopeo, TLS_PEER_KEYS, key("seconds")),
        ),
        CacheRow(
            f"{big_h} blob, skopeo: serving process peak RSS",
            "MB",
            per_variant(skopeo, BLOB_KEYS, rss, "max"),
            0,
        ),
        CacheRow(
            "multi-arch image pull (skopeo --all)",
            "s",
            per_variant(pulls, PULL_KEYS, key("seconds")),
        ),
        CacheRow(
            "multi-arch image pull: upstream round trips",
            "count",
            per_variant(pulls, PULL_KEYS, key("total")),
            0,
        ),
        CacheRow(
            f"{n} clients at once, one {flight_h} blob: wall time",
            "s",
            per_variant(flight, BLOB_KEYS, key("seconds")),
        ),
        CacheRow(
            f"{n} clients at once, one {flight_h} blob: upstream blob GETs",
            "count",
            per_variant(flight, BLOB_KEYS, upstream("GET blob")),
            0,
        ),
        CacheRow(
            f"{n} clients at once, one {flight_h} blob: serving process peak RSS",
            "MB",
            per_variant(flight, BLOB_KEYS, rss, "max"),
            0,
        ),
    ]


def request_table(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The upstream's requests of one multi-arch pull by kind (rows) and column (medians over
    the repetitions; a kind not seen counts 0)."""
    pulls = raw["cold_pulls"]
    seen = {
        k for col in REQUEST_COLUMNS.values() for r in pulls.get(col, []) for k in r["requests"]
    }
    kinds = [k for k in REQUEST_ORDER if k in seen] + sorted(seen - set(REQUEST_ORDER))
    return {
        kind: {
            column: aggregate(pulls.get(col, []), upstream(kind)) or 0.0
            for column, col in REQUEST_COLUMNS.items()
        }
        for kind in kinds
    }


def targets(raw: dict[str, Any], plan: Plan) -> list[Target]:
    """Issue 10's targets for the cache. Worst repetition for counts, maximum for RSS."""
    again = raw["cold_pulls"]["mirror_cache_again"]

    def worst(kind: str) -> int:
        return int(aggregate(again, upstream(kind), "max") or 0)

    heads, gets = worst("HEAD manifest by tag"), worst("GET manifest by tag")
    by_digest = worst("GET manifest by digest")
    blob_gets = worst("GET blob")
    out = [
        Target(
            "second pull through the caching mirror: manifest requests by tag upstream",
            f"{TAGS_PER_PULL} HEAD, no GET",
            f"{heads} HEAD, {gets} GET",
            None,
            heads <= TAGS_PER_PULL and gets == 0,
        ),
        Target(
            "second pull through the caching mirror: manifest GETs by digest upstream",
            "0",
            str(by_digest),
            None,
            by_digest == 0,
        ),
        Target(
            "second pull through the caching mirror: blob GETs upstream",
            "0",
            str(blob_gets),
            None,
            blob_gets == 0,
        ),
    ]
    n, flight = _flight(raw)
    cold = int(aggregate(flight["mirror_cache_cold"], upstream("GET blob"), "max") or 0)
    peer = int(aggregate(flight["peer_cold"], upstream("GET blob"), "max") or 0)
    out.append(
        Target(
            f"{n} clients at once, one cold {human_bytes(plan.flight_blob)} blob: upstream GETs",
            "1",
            f"{cold} (peer {peer})",
            float(cold),
            cold == 1,
        )
    )
    big = size_label(plan.big)
    for variant, doing in (("mirror_cache_cold", "filled"), ("mirror_cache_warm", "served")):
        records = [*raw["blob_curl"][big][variant], *raw["blob_skopeo"][big][variant]]
        peak = aggregate(records, key("front_peak_rss", MB), "max") or 0.0
        out.append(
            Target(
                f"caching mirror peak RSS while {human_bytes(plan.big)} is {doing}",
                f"< {GOAL_RSS_MB:.0f} MB",
                f"{peak:.0f} MB",
                peak / GOAL_RSS_MB,
                peak < GOAL_RSS_MB,
            )
        )
    return out


def table(
    rows: list[CacheRow],
    variants: Sequence[str] = VARIANTS,
    headers: Sequence[str] = HEADERS,
    ratios: Sequence[tuple[str, str]] = RATIOS,
) -> list[str]:
    """The rows as a markdown table: a column by variant (headed `headers`), then `ratios`."""
    name = dict(zip(variants, headers, strict=True))
    head = ["figure", "unit", *headers, *(f"{name[a]}/{name[b]}" for a, b in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.figure, row.unit, *(_fmt(row.values.get(v), row.digits) for v in variants)]
        cells += [_fmt_ratio(row.ratio(a, b)) for a, b in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows: list[CacheRow], requests: dict[str, dict[str, float]]) -> str:
    lines = table(rows)
    columns = list(REQUEST_COLUMNS)
    lines += ["", "| upstream requests, one multi-arch pull | " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * (len(columns) + 1))
    for kind, counts in requests.items():
        lines.append(f"| {kind} | " + " | ".join(_fmt(counts[c], 0) for c in columns) + " |")
    return "\n".join(lines) + "\n"

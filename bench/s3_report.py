"""The S3 cache's and the replicas' figures (issue 13 item 8) from the raw results of
s3_scenarios: as ratios within the run, beside the disk cache and one mirror process."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .cache_report import CacheRow, Getter, key, per_variant, table
from .plan import Plan, human_bytes, size_label
from .report import MB

HIT_VARIANTS = ("direct", "disk", "disk_dp", "s3", "s3_redirect")
HIT_HEADERS = ("direct", "disk cache", "disk data plane", "S3", "S3 redirect")
HIT_RATIOS = (
    ("s3", "disk"),
    ("s3_redirect", "disk"),
    ("s3_redirect", "s3"),
    ("s3_redirect", "disk_dp"),
)
WARM_KEYS = {
    "direct": "direct",
    "disk": "mirror_cache_warm",
    "disk_dp": "mirror_dp_warm",
    "s3": "mirror_s3_warm",
    "s3_redirect": "mirror_s3_redirect_warm",
}
S3_KEYS = {v: k for v, k in WARM_KEYS.items() if v.startswith("s3")}  # moto serves these
COLD_KEYS = {**{v: k.replace("_warm", "_cold") for v, k in WARM_KEYS.items()}, "direct": "direct"}
REPLICA_VARIANTS = ("one", "one_haproxy", "replicas")
REPLICA_HEADERS = ("one process", "one process via haproxy", "2 replicas via haproxy")
REPLICA_RATIOS = (("replicas", "one"), ("replicas", "one_haproxy"))
REPLICA_KEYS = {v: v for v in REPLICA_VARIANTS}
SHARED = {"s3": "one bucket", "dir": "one directory"}
GIB = 1 << 30


def _hit(raw: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return raw["s3"]["hit"][size_label(plan.big)]


def _replicas(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((n, backends),) = raw["s3"]["replicas"].items()
    return n, backends


def hit_rows(raw: dict[str, Any], plan: Plan) -> list[CacheRow]:
    section = _hit(raw, plan)
    big = f"{human_bytes(plan.big)} blob"
    rss = key("front_peak_rss", MB)
    return [
        CacheRow(
            f"{big} hit, curl throughput",
            "MB/s",
            per_variant(section, WARM_KEYS, key("mb_per_s")),
            0,
        ),
        CacheRow(
            f"{big} hit: serving process CPU",
            "s/GiB",
            per_variant(section, WARM_KEYS, key("front_cpu_s_per_gib")),
        ),
        CacheRow(
            f"{big} hit: S3 server (moto) CPU",
            "s/GiB",
            per_variant(section, S3_KEYS, key("s3_cpu_s_per_gib")),
        ),
        CacheRow(
            f"{big} hit: serving process peak RSS",
            "MB",
            per_variant(section, WARM_KEYS, rss, "max"),
            0,
        ),
        CacheRow(
            f"{big} hit: S3 server (moto) peak RSS",
            "MB",
            per_variant(section, S3_KEYS, key("s3_peak_rss", MB), "max"),
            0,
        ),
        CacheRow(
            f"{big} fill (fresh process), curl throughput",
            "MB/s",
            per_variant(section, COLD_KEYS, key("mb_per_s")),
            0,
        ),
        CacheRow(
            f"{big} fill: stored, after the client's last byte",
            "s",
            per_variant(section, COLD_KEYS, key("store_wait_s")),
        ),
    ]


def _cpu_per_gib(*names: str) -> Getter:
    def get(record: dict[str, Any]) -> float | None:
        if any(f"{n}_cpu_s" not in record for n in names):
            return None
        return sum(record[f"{n}_cpu_s"] for n in names) / (record["bytes"] / GIB)

    return get


def _served(replica: str) -> Getter:
    return lambda record: float(record["served_by"].get(replica, 0))


def _upstream_total(record: dict[str, Any]) -> float:
    return float(sum(record["upstream"].values()))


def replica_rows(raw: dict[str, Any], plan: Plan) -> list[CacheRow]:
    n, backends = _replicas(raw)
    out = []
    for backend, section in backends.items():
        what = f"{n} clients x {human_bytes(plan.concurrent_blob)} cached, {SHARED[backend]}"

        def row(
            figure: str,
            unit: str,
            get: Getter,
            how: str = "median",
            digits: int = 2,
            section: dict[str, Any] = section,
            what: str = what,
        ) -> CacheRow:
            return CacheRow(
                f"{what}: {figure}", unit, per_variant(section, REPLICA_KEYS, get, how), digits
            )

        out += [
            row("aggregate", "MB/s", key("mb_per_s"), digits=0),
            row("CPU of the mirrors", "s/GiB", _cpu_per_gib("replica1", "replica2")),
            row("CPU of haproxy", "s/GiB", _cpu_per_gib("haproxy")),
        ]
        if backend == "s3":
            out.append(row("CPU of the S3 server (moto)", "s/GiB", _cpu_per_gib("s3")))
        out += [
            row("clients answered by replica 2", "count", _served("replica2"), digits=0),
            row("upstream requests", "count", _upstream_total, "max", 0),
        ]
    return out


def summary(raw: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The rows with their ratios, for the JSON."""

    def rows(found: list[CacheRow], ratios: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
        return [
            {**asdict(r), "ratios": {f"{a}/{b}": r.ratio(a, b) for a, b in ratios}} for r in found
        ]

    return {
        "hit": rows(hit_rows(raw, plan), HIT_RATIOS),
        "replicas": rows(replica_rows(raw, plan), REPLICA_RATIOS),
    }


def markdown(raw: dict[str, Any], plan: Plan) -> str:
    hits = table(hit_rows(raw, plan), HIT_VARIANTS, HIT_HEADERS, HIT_RATIOS)
    many = table(replica_rows(raw, plan), REPLICA_VARIANTS, REPLICA_HEADERS, REPLICA_RATIOS)
    note = "The S3 server is moto (one Python process, in memory): it bounds every S3 figure."
    return "\n".join([*hits, "", *many, "", note]) + "\n"


def write_alone(out: Path, meta: dict[str, Any], raw: dict[str, Any], plan: Plan) -> int:
    """`--only s3`: s3-DATE.json (meta, summary, raw) and latest-s3.md; the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"s3-{meta['date']}.json"
    doc = {"meta": meta, "s3": summary(raw, plan), "raw": raw}
    path.write_text(json.dumps(doc, indent=1))
    text = markdown(raw, plan)
    (out / "latest-s3.md").write_text(text)
    print(text)
    print(f"results: {path}")
    return 0

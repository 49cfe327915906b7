"""Medians, ratios and targets from the raw results; the table, the JSON and the chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .plan import Plan, human_bytes, size_label

VARIANTS = ("direct", "mirror", "peer_cold", "peer_warm")
HEADERS = ("direct", "mirror", "peer cold", "peer warm")
MB = 1e6

# The targets of issue 4 (and issue 2 item 9 for RSS).
GOAL_THROUGHPUT = 0.5  # mirror/direct curl throughput, at least
GOAL_SKOPEO = 1.1  # mirror/peer skopeo pull time, at most
GOAL_RSS_MB = 100.0  # peak RSS while the large blob passes, below
GOAL_RSS_ISSUE2_MB = 150.0
GOAL_HEAD_OVERHEAD_MS = 2.0  # manifest HEAD p50, mirror minus direct, below


@dataclass
class Row:
    figure: str
    unit: str
    values: dict[str, float | None]  # by variant
    digits: int = 2

    def ratio(self, other: str) -> float | None:
        mirror, base = self.values.get("mirror"), self.values.get(other)
        if mirror is None or not base:
            return None
        return mirror / base


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    ratio: float | None
    met: bool


def _med(records: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return float(statistics.median(values)) if values else None


def _max(records: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return float(max(values)) if values else None


def _per_variant(
    section: dict[str, list[dict[str, Any]]], key: str, how: str = "median", scale: float = 1.0
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for v in VARIANTS:
        value = (_max if how == "max" else _med)(section.get(v, []), key)
        out[v] = None if value is None else value / scale
    return out


def _tls_peer(section: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float | None]:
    """direct and mirror as measured, the TLS peer in the peer columns."""
    return {
        "direct": _med(section["direct"], key),
        "mirror": _med(section["mirror"], key),
        "peer_cold": _med(section.get("peer_tls_cold", []), key),
        "peer_warm": _med(section.get("peer_tls_warm", []), key),
    }


def summarize(raw: dict[str, Any], plan: Plan) -> tuple[list[Row], list[Target], dict[str, Any]]:
    rows: list[Row] = []
    big = size_label(plan.big)
    big_h = human_bytes(plan.big)
    curl = raw["blob_curl"][big]
    skopeo = raw["blob_skopeo"][big]
    tls = curl.get("mirror_tls", [])
    rows += [
        Row(f"{big_h} blob, curl throughput", "MB/s", _per_variant(curl, "mb_per_s"), 0),
        Row(
            f"{big_h} blob, curl throughput, mirror over TLS",
            "MB/s",
            {
                **dict.fromkeys(VARIANTS),
                "direct": _med(curl["direct"], "mb_per_s"),
                "mirror": _med(tls, "mb_per_s"),
            },
            0,
        ),
        Row(
            f"{big_h} blob, skopeo copy to dir: (mirror over TLS)",
            "s",
            _per_variant(skopeo, "seconds"),
        ),
        Row(
            f"{big_h} blob, skopeo copy to dir:, peer over TLS too",
            "s",
            _tls_peer(skopeo, "seconds"),
        ),
        Row(f"{big_h} blob, skopeo's own CPU", "s", _per_variant(skopeo, "client_cpu_s")),
        Row(
            f"{big_h} blob, skopeo's own CPU, peer over TLS too",
            "s",
            _tls_peer(skopeo, "client_cpu_s"),
        ),
        Row(
            f"{big_h} blob, serving process CPU", "s/GiB", _per_variant(curl, "front_cpu_s_per_gib")
        ),
        Row(
            f"{big_h} blob, serving process CPU, mirror over TLS",
            "s/GiB",
            {
                **dict.fromkeys(VARIANTS),
                "direct": _med(curl["direct"], "front_cpu_s_per_gib"),
                "mirror": _med(tls, "front_cpu_s_per_gib"),
            },
        ),
        Row(
            f"{big_h} blob, serving process peak RSS (curl)",
            "MB",
            _per_variant(curl, "front_peak_rss", "max", MB),
            0,
        ),
        Row(
            f"{big_h} blob, serving process peak RSS (skopeo)",
            "MB",
            _per_variant(skopeo, "front_peak_rss", "max", MB),
            0,
        ),
    ]
    for kind, label in (
        ("manifest_head", "manifest HEAD"),
        ("manifest_get_digest", "manifest GET by digest"),
    ):
        section = raw["small_requests"][kind]
        for p in ("p50", "p99"):
            values: dict[str, float | None] = {
                "direct": section["direct"][f"{p}_ms"],
                "mirror": section["mirror"][f"{p}_ms"],
                "peer_cold": None,
                "peer_warm": section["peer"][f"{p}_ms"],
            }
            counts = "/".join(str(section[t]["n"]) for t in ("direct", "mirror", "peer"))
            rows.append(Row(f"{label} {p} (n={counts})", "ms", values))
    pulls = raw["cold_pulls"]
    pull_values = {
        "direct": _med(pulls["direct"], "seconds"),
        "mirror": _med(pulls["mirror"], "seconds"),
        "peer_cold": _med(pulls["peer"], "seconds"),
        "peer_warm": None,
    }
    trips = {
        "direct": _med(pulls["direct"], "total"),
        "mirror": _med(pulls["mirror"], "total"),
        "peer_cold": _med(pulls["peer"], "total"),
        "peer_warm": None,
    }
    rows.append(Row("cold pull, multi-arch image (skopeo --all)", "s", pull_values))
    rows.append(Row("cold pull, upstream round trips", "count", trips, 0))
    again = {
        "direct": None,
        "mirror": _med(pulls["mirror_again"], "total"),
        "peer_cold": None,
        "peer_warm": _med(pulls["peer_again"], "total"),
    }
    rows.append(Row("same image again, another client: upstream round trips", "count", again, 0))
    for n, section in raw["concurrency"].items():
        per = human_bytes(plan.concurrent_blob)
        rows.append(
            Row(
                f"{n} clients x {per} blobs, aggregate",
                "MB/s",
                _per_variant(section, "mb_per_s"),
                0,
            )
        )
        rows.append(
            Row(
                f"{n} clients, serving process peak RSS",
                "MB",
                _per_variant(section, "front_peak_rss", "max", MB),
                0,
            )
        )
    clients = plan.concurrency[-1]
    for n, section in raw["idle_connections"].items():
        rows.append(
            Row(
                f"{n} idle connections, serving process RSS",
                "MB",
                _per_variant(section, "rss_idle", "max", MB),
                0,
            )
        )
        rows.append(
            Row(
                f"{clients} clients beside {n} idle connections, serving process peak RSS",
                "MB",
                _per_variant(section, "front_peak_rss", "max", MB),
                0,
            )
        )
    scaling: dict[str, Any] = {}
    for size in plan.sizes:
        label = size_label(size)
        section = raw["blob_curl"][label]
        secs = _per_variant(section, "seconds")
        rss = _per_variant(section, "front_peak_rss", "max", MB)
        rows.append(Row(f"scaling {human_bytes(size)}: curl time", "s", secs, 3))
        rows.append(Row(f"scaling {human_bytes(size)}: serving process peak RSS", "MB", rss, 0))
        scaling[label] = {"bytes": size, "seconds": secs, "peak_rss_mb": rss}

    targets = _targets(rows, raw, plan)
    return rows, targets, scaling


def _find(rows: list[Row], prefix: str) -> Row:
    return next(r for r in rows if r.figure.startswith(prefix))


def _targets(rows: list[Row], raw: dict[str, Any], plan: Plan) -> list[Target]:
    big_h = human_bytes(plan.big)
    out: list[Target] = []
    thr = _find(rows, f"{big_h} blob, curl throughput")
    r = thr.ratio("direct")
    out.append(
        Target(
            "blob throughput (curl), mirror/direct",
            f">= {GOAL_THROUGHPUT}x",
            f"{thr.values['mirror']:.0f} vs {thr.values['direct']:.0f} MB/s",
            r,
            r is not None and r >= GOAL_THROUGHPUT,
        )
    )
    plain = _find(rows, f"{big_h} blob, skopeo copy to dir: (mirror")
    tls = _find(rows, f"{big_h} blob, skopeo copy to dir:, peer over TLS")
    for sk, how in ((plain, "peer plain HTTP"), (tls, "peer over TLS too")):
        for variant, label in (("peer_cold", "cold"), ("peer_warm", "warm")):
            r = sk.ratio(variant)
            peer = sk.values[variant]
            out.append(
                Target(
                    f"skopeo pull time, mirror/peer ({label}, {how})",
                    f"<= {GOAL_SKOPEO}x",
                    f"{sk.values['mirror']:.2f} vs {peer or 0:.2f} s",
                    r,
                    r is not None and r <= GOAL_SKOPEO,
                )
            )
    rss_rows = [r for r in rows if r.figure.startswith(f"{big_h} blob, serving process peak RSS")]
    peak = max(r.values["mirror"] or 0.0 for r in rss_rows)
    for goal, issue in ((GOAL_RSS_MB, "issue 4"), (GOAL_RSS_ISSUE2_MB, "issue 2")):
        out.append(
            Target(
                f"mirror peak RSS while {big_h} passes ({issue})",
                f"< {goal:.0f} MB",
                f"{peak:.0f} MB",
                peak / goal,
                peak < goal,
            )
        )
    head = _find(rows, "manifest HEAD p50")
    mirror, direct = head.values["mirror"], head.values["direct"]
    assert mirror is not None and direct is not None
    out.append(
        Target(
            "manifest HEAD p50 overhead over direct",
            f"< {GOAL_HEAD_OVERHEAD_MS:.0f} ms",
            f"+{mirror - direct:.2f} ms ({mirror:.2f} vs {direct:.2f})",
            head.ratio("direct"),
            mirror - direct < GOAL_HEAD_OVERHEAD_MS,
        )
    )
    trips = _find(rows, "cold pull, upstream round trips")
    m, p = trips.values["mirror"], trips.values["peer_cold"]
    assert m is not None and p is not None
    out.append(
        Target(
            "upstream round trips per cold pull, mirror vs peer",
            "fewer",
            f"{m:.0f} vs {p:.0f}",
            trips.ratio("peer_cold"),
            m < p,
        )
    )
    return out


# ------------------------------------------------------------------------------------------
# text
# ------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(rows: list[Row], targets: list[Target]) -> str:
    head = ["figure", "unit", *HEADERS, "mirror/direct", "mirror/peer cold", "mirror/peer warm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.figure, row.unit, *(_fmt(row.values.get(v), row.digits) for v in VARIANTS)]
        cells += [_fmt_ratio(row.ratio(v)) for v in ("direct", "peer_cold", "peer_warm")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + target_table(targets)


def target_table(targets: list[Target]) -> str:
    lines = ["| target | goal | measured | ratio | result |", "|---|---|---|---|---|"]
    for t in targets:
        result = "**met**" if t.met else "**not met**"
        lines.append(f"| {t.name} | {t.goal} | {t.measured} | {_fmt_ratio(t.ratio)} | {result} |")
    return "\n".join(lines) + "\n"


def write_json(
    path: Path,
    meta: dict[str, Any],
    raw: dict[str, Any],
    rows: list[Row],
    targets: list[Target],
    scaling: dict[str, Any],
    cache: dict[str, Any],
) -> None:
    doc = {
        "meta": meta,
        "summary": [
            {**asdict(r), "ratios": {v: r.ratio(v) for v in ("direct", "peer_cold", "peer_warm")}}
            for r in rows
        ],
        "targets": [asdict(t) for t in targets],
        "scaling": scaling,
        "cache": cache,
        "raw": raw,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))

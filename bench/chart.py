"""One PNG with every figure of a run (matplotlib, no display needed)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .measure import ROUND_TRIP_KINDS  # noqa: E402
from .plan import Plan, human_bytes, size_label  # noqa: E402
from .report import Target  # noqa: E402

COLORS = {
    "direct": "#4c72b0",
    "mirror": "#dd8452",
    "peer_cold": "#55a868",
    "peer_warm": "#8fd19e",
    "peer_tls_cold": "#8172b3",
    "peer_tls_warm": "#b9afe0",
}
LABELS = {
    "direct": "direct",
    "mirror": "mirror",
    "peer_cold": "peer cold",
    "peer_warm": "peer warm",
    "peer_tls_cold": "peer TLS\ncold",
    "peer_tls_warm": "peer TLS\nwarm",
}
BLOB_VARIANTS = ("direct", "mirror", "peer_cold", "peer_warm")


def _median(records: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in records)) if records else 0.0


def _bars(
    ax: Any,
    section: dict[str, list[dict[str, Any]]],
    key: str,
    variants: tuple[str, ...] = BLOB_VARIANTS,
) -> None:
    for i, v in enumerate(variants):
        values = [r[key] for r in section.get(v, [])]
        if not values:
            continue
        mid = statistics.median(values)
        err = [[mid - min(values)], [max(values) - mid]]
        ax.bar(i, mid, color=COLORS[v], yerr=err, capsize=3)
        ax.annotate(
            f"{mid:,.0f}" if mid >= 10 else f"{mid:.2f}",
            (i, mid),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(range(len(variants)), [LABELS[v] for v in variants], fontsize=7)


def draw(path: Path, raw: dict[str, Any], plan: Plan, targets: list[Target], title: str) -> None:
    big = size_label(plan.big)
    fig, axes = plt.subplots(2, 4, figsize=(18, 10))
    fig.suptitle(title, fontsize=11)

    ax = axes[0][0]
    _bars(ax, raw["blob_curl"][big], "mb_per_s")
    ax.set_title(f"{human_bytes(plan.big)} blob, curl (MB/s, higher is better)", fontsize=9)

    ax = axes[0][1]
    _bars(
        ax, raw["blob_skopeo"][big], "seconds", (*BLOB_VARIANTS, "peer_tls_cold", "peer_tls_warm")
    )
    ax.set_title(
        f"{human_bytes(plan.big)} image, skopeo copy (s, lower is better; mirror over TLS)",
        fontsize=9,
    )

    ax = axes[0][2]
    small = raw["small_requests"]
    groups = [(k, p) for k in ("manifest_head", "manifest_get_digest") for p in ("p50", "p99")]
    width = 0.27
    for j, (target, key) in enumerate(
        (("direct", "direct"), ("mirror", "mirror"), ("peer", "peer_warm"))
    ):
        xs = [i + (j - 1) * width for i in range(len(groups))]
        ys = [small[k][target][f"{p}_ms"] for k, p in groups]
        ax.bar(
            xs, ys, width, color=COLORS[key], label=LABELS[key] if key != "peer_warm" else "peer"
        )
    ax.set_xticks(
        range(len(groups)),
        [f"{'HEAD' if k == 'manifest_head' else 'GET digest'} {p}" for k, p in groups],
        fontsize=8,
    )
    ax.set_title("manifest requests, keep-alive (ms, lower is better)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[0][3]
    pulls = raw["cold_pulls"]
    bottom = [0.0, 0.0, 0.0]
    cmap = plt.get_cmap("tab10")
    for k, kind in enumerate(ROUND_TRIP_KINDS):
        ys = [
            _median([{"v": r["round_trips"][kind]} for r in pulls[t]], "v")
            for t in ("direct", "mirror", "peer")
        ]
        if not any(ys):
            continue
        ax.bar(range(3), ys, bottom=bottom, color=cmap(k), label=kind)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.0f}", (i, total), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(3), ["direct (client)", "mirror", "peer"], fontsize=8)
    ax.set_title("cold multi-arch pull: upstream round trips", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1][0]
    conc = raw["concurrency"]
    ns = list(conc)
    width = 0.2
    for j, v in enumerate(BLOB_VARIANTS):
        xs = [i + (j - 1.5) * width for i in range(len(ns))]
        ax.bar(
            xs,
            [_median(conc[n][v], "mb_per_s") for n in ns],
            width,
            color=COLORS[v],
            label=LABELS[v],
        )
    ax.set_xticks(range(len(ns)), [f"{n} clients" for n in ns], fontsize=8)
    ax.set_title(
        f"concurrent pulls of {human_bytes(plan.concurrent_blob)} blobs (MB/s aggregate)",
        fontsize=9,
    )
    ax.legend(fontsize=7)

    ax = axes[1][1]
    sizes = list(plan.sizes)
    for v in BLOB_VARIANTS:
        ys = [_median(raw["blob_curl"][size_label(s)][v], "seconds") for s in sizes]
        ax.plot([s / (1 << 20) for s in sizes], ys, marker="o", color=COLORS[v], label=LABELS[v])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("blob size (MiB)", fontsize=8)
    ax.set_title("scaling: curl time (s) against blob size", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1][2]
    for v in ("mirror", "peer_cold"):
        ys = [
            max(r["front_peak_rss"] for r in raw["blob_curl"][size_label(s)][v]) / 1e6
            for s in sizes
        ]
        ax.plot([s / (1 << 20) for s in sizes], ys, marker="o", color=COLORS[v], label=LABELS[v])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("blob size (MiB)", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.set_title("scaling: peak RSS of the serving process (MB)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1][3]
    mirror_runs = raw["blob_curl"][big]["mirror"]
    series = next((r["front_rss_series"] for r in mirror_runs if r.get("front_rss_series")), [])
    ys = [m / 1e6 for _, m in series]
    ax.plot([t for t, _ in series], ys, color=COLORS["mirror"], label="mirror RSS")
    ax.axhline(100, color="grey", ls="--", lw=0.8, label="issue 4 goal: < 100 MB")
    ax.set_ylim(0, max([*ys, 100]) * 1.15)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_title(f"mirror RSS (MB) while {human_bytes(plan.big)} passes (curl)", fontsize=9)

    lines = [
        f"{'met' if t.met else 'NOT MET'}: {t.name} = {t.measured} (goal {t.goal})" for t in targets
    ]
    fig.text(0.01, 0.01, "\n".join(lines), va="bottom", ha="left", family="monospace", fontsize=8)

    fig.tight_layout(rect=(0, 0.02 + 0.0145 * len(lines), 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

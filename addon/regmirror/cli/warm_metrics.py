"""Progress of `cache warm` for Prometheus: with `--metrics-file`, the figures are written
after every image to a file in the text format (atomically: a temporary file renamed), for
node_exporter's textfile collector or any scraper that reads files."""

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from .warm import Warmed


def write(path: Path, done: Sequence[Warmed], total: int, now: float) -> None:
    registry = CollectorRegistry()
    images = Gauge(
        "regmirror_warm_images",
        "Images of the current or last `cache warm` run, by result: ok, failed, pending.",
        ["result"],
        registry=registry,
    )
    failed = sum(1 for w in done if w.error)
    for result, n in (
        ("ok", len(done) - failed),
        ("failed", failed),
        ("pending", total - len(done)),
    ):
        images.labels(result).set(n)
    Gauge(
        "regmirror_warm_bytes",
        "Bytes of manifests, configs and layers pulled into the cache by that run.",
        registry=registry,
    ).set(sum(w.size for w in done))
    Gauge(
        "regmirror_warm_updated_timestamp_seconds",
        "When these figures were written.",
        registry=registry,
    ).set(now)
    write_to_textfile(str(path), registry)

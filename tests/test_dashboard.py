"""docs/grafana-dashboard.json asks only for metrics the mirror exports."""

import json
import re
from pathlib import Path

from prometheus_client.metrics_core import Metric
from regmirror.addons import mirror_addons
from regmirror.observe.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    """The names of every series the mirror's registry can export."""
    metrics = next(a for a in mirror_addons() if isinstance(a, Metrics))
    families: list[Metric] = list(metrics.registry.collect())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def test_every_panel_asks_for_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = {name for e in exprs for name in re.findall(r"\bregmirror_\w+", e)}
    assert used - exported() == set()
    for core in ("regmirror_cache_size_bytes", "regmirror_cache_max_size_bytes",
                 "regmirror_cache_lookups_total", "regmirror_served_bytes_total",
                 "regmirror_upstream_last_success_timestamp_seconds"):  # fmt: skip
        assert core in used

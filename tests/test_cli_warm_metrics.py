from prometheus_client.parser import text_string_to_metric_families
from regmirror.cli import warm_metrics
from regmirror.cli.references import parse_reference
from regmirror.cli.warm import Warmed


def test_progress_is_written_as_prometheus_text(tmp_path):
    path = tmp_path / "warm.prom"
    done = [
        Warmed(parse_reference("nginx:1"), "sha256:" + "1" * 64, size=1000),
        Warmed(parse_reference("nosuch:1"), error="404 MANIFEST_UNKNOWN"),
    ]
    warm_metrics.write(path, done, 5, 1700000000.0)
    samples = {
        (s.name, s.labels.get("result", "")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples == {
        ("regmirror_warm_images", "ok"): 1,
        ("regmirror_warm_images", "failed"): 1,
        ("regmirror_warm_images", "pending"): 3,
        ("regmirror_warm_bytes", ""): 1000,
        ("regmirror_warm_updated_timestamp_seconds", ""): 1700000000.0,
    }
    assert list(tmp_path.iterdir()) == [path]  # written by a rename: no temporary file left

from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry, Counter
from regmirror.status import HEALTH_PATH, METRICS_PATH, StatusEndpoints, answer

from tests.flowutil import reverse_flow


def test_answers():
    registry = CollectorRegistry()
    Counter("regmirror_test", "A test counter.", registry=registry).inc(3)
    health = answer("GET", HEALTH_PATH, registry)
    assert (health.status_code, health.content) == (200, b"ok\n")
    metrics = answer("GET", METRICS_PATH, registry)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    assert b"regmirror_test_total 3.0" in metrics.content
    head = answer("HEAD", METRICS_PATH, registry)
    assert head.content == b"" and head.headers["Content-Length"] == str(len(metrics.content))
    assert answer("POST", HEALTH_PATH, registry).status_code == 405
    assert answer("GET", "/v2/", registry) is None
    assert answer("GET", "/_regmirror/redirect", registry) is None


def test_answered_before_routing():
    status = StatusEndpoints(CollectorRegistry())
    with taddons.context(status):
        f = reverse_flow("GET", HEALTH_PATH + "?probe=1")
        status.requestheaders(f)
        assert f.response.status_code == 200
        assert f.request.host == "registry-1.docker.io"  # never sent upstream
        g = reverse_flow("GET", "/v2/")
        status.requestheaders(g)
        assert g.response is None

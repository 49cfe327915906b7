"""The mirror's own endpoints for operators, on the mirror's port under /_regmirror/, a
prefix no registry API path can take (they all start with /v2/):

- /_regmirror/healthz: 200 "ok" while the proxy answers requests (for load balancers);
- /_regmirror/metrics: Prometheus metrics (see metrics.py).

They are answered before routing, so they never reach an upstream or count in the metrics.
"""

from mitmproxy import http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HEALTH_PATH = "/_regmirror/healthz"
METRICS_PATH = "/_regmirror/metrics"


def answer(method: str, path: str, registry: CollectorRegistry) -> http.Response | None:
    """The response for a status endpoint, or None when `path` is not one."""
    if path not in (HEALTH_PATH, METRICS_PATH):
        return None
    if method not in ("GET", "HEAD"):
        status, body, ctype = 405, b"GET or HEAD only\n", "text/plain; charset=utf-8"
    elif path == HEALTH_PATH:
        status, body, ctype = 200, b"ok\n", "text/plain; charset=utf-8"
    else:
        status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
    resp = http.Response.make(status, b"" if method == "HEAD" else body, {"Content-Type": ctype})
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"
    return resp


class StatusEndpoints:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        resp = answer(flow.request.method, flow.request.path.split("?", 1)[0], self.registry)
        if resp:
            flow.response = resp

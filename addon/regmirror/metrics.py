"""Prometheus metrics of the mirror (served by `status.py` at /_regmirror/metrics).

Labels stay few and bounded: `route` is the upstream's base URL, `operation` the registry
operation (manifest, blob, token ...), `status` the HTTP status. No repository names, no
credentials.
"""

import weakref

from mitmproxy import http
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import names
from .flowinfo import info

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def parse_ratelimit(value: str) -> float | None:
    """Docker Hub's `ratelimit-remaining: 76;w=21600` (or a bare `76`) -> 76."""
    try:
        return float(value.split(";", 1)[0].strip())
    except ValueError:
        return None


def served_bytes(method: str, resp: http.Response) -> int:
    """Body bytes sent to the client: Content-Length for streamed bodies (never counted
    chunk by chunk), nothing for HEAD."""
    if method == "HEAD":
        return 0
    length = resp.headers.get("Content-Length", "")
    # "²".isdigit(), but int("²") fails
    return int(length) if length.isascii() and length.isdigit() else len(resp.raw_content or b"")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sent_upstream: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        r = self.registry
        self.requests = Counter(
            "regmirror_requests",
            "Requests answered, by upstream route, registry operation and status "
            '(status "error": the connection failed before a response).',
            ["route", "operation", "status"],
            registry=r,
        )
        self.served = Counter(
            "regmirror_served_bytes",
            "Response body bytes served to clients (by Content-Length for streamed blobs).",
            ["route", "operation"],
            registry=r,
        )
        self.latency = Histogram(
            "regmirror_upstream_latency_seconds",
            "Seconds from a request sent upstream to the upstream's response headers.",
            ["route", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "regmirror_token_fetches",
            "Token requests forwarded to an upstream's token service, by status.",
            ["route", "status"],
            registry=r,
        )
        self.throttled = Counter(
            "regmirror_upstream_throttled",
            "Upstream answers 429 Too Many Requests.",
            ["route"],
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "regmirror_upstream_ratelimit_remaining",
            "Latest ratelimit-remaining header of an upstream (Docker Hub: pulls left).",
            ["route"],
            registry=r,
        )
        self.ratelimit_limit = Gauge(
            "regmirror_upstream_ratelimit_limit",
            "Latest ratelimit-limit header of an upstream (Docker Hub: pulls per window).",
            ["route"],
            registry=r,
        )

    def request(self, flow: http.HTTPFlow) -> None:
        # The last addon: a flow still without a response now goes upstream.
        if flow.response or not info(flow):
            return
        self.sent_upstream.add(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not resp or not i or flow not in self.sent_upstream:
            return
        route = i.get("upstream", "")
        if flow.request.timestamp_end and resp.timestamp_start:
            seconds = max(0.0, resp.timestamp_start - flow.request.timestamp_end)
            self.latency.labels(route, i.get("op", "")).observe(seconds)
        if resp.status_code == 429:
            self.throttled.labels(route).inc()
        for header, gauge in (
            ("ratelimit-remaining", self.ratelimit_remaining),
            ("ratelimit-limit", self.ratelimit_limit),
        ):
            if (n := parse_ratelimit(resp.headers.get(header, ""))) is not None:
                gauge.labels(route).set(n)

    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not resp or not i:
            return
        route, op, status = i.get("upstream", ""), i.get("op", ""), str(resp.status_code)
        self.requests.labels(route, op, status).inc()
        self.served.labels(route, op).inc(served_bytes(flow.request.method, resp))
        if op == names.TOKEN:
            self.tokens.labels(route, status).inc()

    def error(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or not flow.error:
            return
        self.requests.labels(i.get("upstream", ""), i.get("op", ""), "error").inc()

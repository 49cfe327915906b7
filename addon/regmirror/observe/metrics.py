"""Prometheus metrics of the mirror (served by `status.py` at /_regmirror/metrics).

Labels stay few and bounded: `route` is the upstream's base URL, `operation` the registry
operation (manifest, blob, token ...), `status` the HTTP status. No repository names, no
credentials.
"""

import weakref

from mitmproxy import http
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..record import KEY, outcome, route
from .describe import metric_label, response_size

SERVED_BY_CACHE = ("hit", "stale")  # cache results answered from its files
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
    return 0 if method == "HEAD" else response_size(resp)


def source(flow: http.HTTPFlow) -> str:
    """Where an answer came from: the cache (a hit, or a stale tag), the mirror itself, or
    an upstream."""
    result = outcome(flow)
    if result.get("cache") in SERVED_BY_CACHE:
        return "cache"
    return "mirror" if result.get("answered_by") else "upstream"


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
            "Response body bytes served to clients (by Content-Length for streamed blobs), by "
            "source: upstream, cache (hits and stale answers) or mirror (its own answers).",
            ["route", "operation", "source"],
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
            "Token requests forwarded to an upstream's token service, by status (the token "
            "cache's answers are counted in regmirror_answered_by_mirror_total).",
            ["route", "status"],
            registry=r,
        )
        self.answered = Counter(
            "regmirror_answered_by_mirror",
            "Requests the mirror answered itself instead of asking an upstream, by operation "
            "and by who answered (router, client auth, token proxy, token cache, challenge "
            "cache, limits, outbound, guard).",
            ["operation", "by"],
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
        # The last addon: a flow still without a response now goes upstream (or, for a
        # cache hit, to the cache's file server, which is no upstream).
        if flow.response or flow.error or KEY not in flow.metadata:
            return
        if outcome(flow).get("cache") in SERVED_BY_CACHE:
            return
        self.sent_upstream.add(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if not resp or flow not in self.sent_upstream:
            return
        upstream, op = labels(flow)
        if flow.request.timestamp_end and resp.timestamp_start:
            seconds = max(0.0, resp.timestamp_start - flow.request.timestamp_end)
            self.latency.labels(upstream, op).observe(seconds)
        if resp.status_code == 429:
            self.throttled.labels(upstream).inc()
        for header, gauge in (
            ("ratelimit-remaining", self.ratelimit_remaining),
            ("ratelimit-limit", self.ratelimit_limit),
        ):
            if (n := parse_ratelimit(resp.headers.get(header, ""))) is not None:
                gauge.labels(upstream).set(n)

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if not resp or KEY not in flow.metadata:
            return
        (upstream, op), status = labels(flow), str(resp.status_code)
        self.requests.labels(upstream, op, status).inc()
        self.served.labels(upstream, op, source(flow)).inc(served_bytes(flow.request.method, resp))
        if by := outcome(flow).get("answered_by"):
            self.answered.labels(op, by).inc()
        elif op == "token":
            self.tokens.labels(upstream, status).inc()

    def error(self, flow: http.HTTPFlow) -> None:
        if KEY not in flow.metadata or not flow.error:
            return
        self.requests.labels(*labels(flow), "error").inc()


def labels(flow: http.HTTPFlow) -> tuple[str, str]:
    """(route, operation) labels of a flow: the upstream's base URL (a followed redirect's
    too) and describe.py's object word."""
    r = route(flow)
    return (r.get("upstream", "") if r else ""), metric_label(r)

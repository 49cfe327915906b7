"""The mirror's own endpoints for operators, on the mirror's port under /_regmirror/, a
prefix no registry API path can take (they all start with /v2/):

- /_regmirror/healthz: 200 "ok" while the proxy answers requests (for load balancers);
- /_regmirror/metrics: Prometheus metrics (see metrics.py). Under client authentication it
  needs credentials too, unless the scraper's address is in regmirror_metrics_allow.

They are answered before routing, so they never reach an upstream or count in the metrics.
"""

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from mitmproxy import ctx, exceptions, http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .. import answers

HEALTH_PATH = "/_regmirror/healthz"
METRICS_PATH = "/_regmirror/metrics"
TEXT = "text/plain; charset=utf-8"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def answer(method: str, path: str, registry: CollectorRegistry) -> http.Response | None:
    """The response for a status endpoint, or None when `path` is not one."""
    if path not in (HEALTH_PATH, METRICS_PATH):
        return None
    if method not in ("GET", "HEAD"):
        status, body, ctype = 405, b"GET or HEAD only\n", TEXT
    elif path == HEALTH_PATH:
        status, body, ctype = 200, b"ok\n", TEXT
    else:
        status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
    return _response(method, status, body, ctype)


def _response(method: str, status: int, body: bytes, ctype: str) -> http.Response:
    resp = http.Response.make(status, b"" if method == "HEAD" else body, {"Content-Type": ctype})
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def parse_networks(specs: Sequence[str]) -> list[Network]:
    """`10.0.0.0/8`, `192.0.2.7`, `::1` -> networks. Raises ValueError."""
    return [ipaddress.ip_network(s.strip(), strict=False) for s in specs]


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


class StatusEndpoints:
    def __init__(
        self,
        registry: CollectorRegistry,
        admits: Callable[[http.Request], Awaitable[bool]] | None = None,
    ) -> None:
        """`admits`: whether a request's credentials pass client authentication."""
        self.registry = registry
        self.admits = admits
        self.open_to: list[Network] = []

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_metrics_allow",
            Sequence[str],
            [],
            """
            Client addresses or networks (CIDR, e.g. "10.0.0.0/8") that may read
            /_regmirror/metrics without credentials when client authentication ([auth] in
            the config) is on, for a Prometheus scraper. Others need the credentials a
            registry client would use (Basic, a static token as Bearer, or a token the
            mirror issued). Without [auth] the metrics are open to all.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if "regmirror_metrics_allow" in updated:
            try:
                self.open_to = parse_networks(ctx.options.regmirror_metrics_allow)
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_metrics_allow: {e}") from e

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path == METRICS_PATH and not await self._may_read_metrics(flow):
            resp = _response(req.method, 401, b"authentication required\n", TEXT)
            resp.headers["WWW-Authenticate"] = 'Basic realm="regmirror"'
            return answers.answer(flow, resp, None)
        if resp := answer(req.method, path, self.registry):
            answers.answer(flow, resp, None)

    async def _may_read_metrics(self, flow: http.HTTPFlow) -> bool:
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if in_networks(peer, self.open_to):
            return True
        return self.admits is None or await self.admits(flow.request)

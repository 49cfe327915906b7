"""The router: classifies every request (routing/classify.py) and writes its route, then
sends it to its upstream, or answers what the mirror refuses. First of the mirror's addons
after the status endpoints: every other addon reads the route it writes."""

import asyncio
import logging
import time
import weakref
from collections.abc import Sequence

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from .. import errors
from ..answers import answer, refuse
from ..record import ROOT, route, set_route
from ..transport.signing import Signer
from . import names
from .catalog import Registry
from .classify import Refused, Settings, classify
from .config import Config
from .config_file import ConfigFile
from .options import load_options
from .policy import visible_catalog
from .table import Table
from .upstreams import Upstream, mirror_base, parse_route, parse_upstream

logger = logging.getLogger(__name__)


def reverse_registry(mode: ProxyMode, dockerhub_hosts: Sequence[str]) -> Registry | None:
    """The registry given by `--mode reverse:URL`, or None for other modes."""
    if not isinstance(mode, ReverseMode) or mode.scheme not in ("http", "https"):
        return None
    host, port = mode.address
    upstream = parse_upstream(f"{mode.scheme}://{host}:{port}", dockerhub_hosts)
    return Registry(upstream.hostport, upstream)


class Router:
    def __init__(self, signer: Signer | None = None) -> None:
        self.signer = signer or Signer()
        self.config = Config()
        self.routes: dict[str, Registry] = {}
        self.file = ConfigFile()
        # per listener (--mode): its route table, None outside reverse mode
        self._tables: dict[ProxyMode, Table | None] = {}
        self._registries: weakref.WeakKeyDictionary[http.HTTPFlow, Registry] = (
            weakref.WeakKeyDictionary()
        )
        self._watch: asyncio.Task | None = None

    def load(self, loader) -> None:
        load_options(loader)

    def configure(self, updated: set[str]) -> None:
        if "regmirror_routes" in updated or "regmirror_dockerhub_hosts" in updated:
            routes: dict[str, Registry] = {}
            for spec in ctx.options.regmirror_routes:
                try:
                    host, upstream = parse_route(spec, ctx.options.regmirror_dockerhub_hosts)
                except ValueError as e:
                    raise exceptions.OptionsError(f"regmirror_routes: {e}") from e
                routes[host] = Registry(upstream.hostport, upstream)
            self.routes = routes
            self._tables.clear()
        if "regmirror_config" in updated:
            self.config = self.file.load(ctx.options.regmirror_config)
            self._tables.clear()

    def running(self) -> None:
        self._watch = asyncio.create_task(
            self.file.watch(lambda: ctx.options.regmirror_config, self.reload)
        )

    def done(self) -> None:
        if self._watch:
            self._watch.cancel()

    @command.command("regmirror.reload")
    def reload(self) -> None:
        """Read the mirror's configuration file again."""
        try:
            self.config = self.file.load(ctx.options.regmirror_config)
        except exceptions.OptionsError as e:
            logger.error("%s; keeping the previous configuration", e)
        else:
            self._tables.clear()
            logger.info("regmirror: configuration reloaded")

    def table(self, flow: http.HTTPFlow) -> Table | None:
        """The route table for the flow's listener; None outside reverse mode."""
        mode = flow.client_conn.proxy_mode
        if mode not in self._tables:
            fallback = reverse_registry(mode, ctx.options.regmirror_dockerhub_hosts)
            default = None if self.routes else fallback
            self._tables[mode] = (
                None if fallback is None else Table(self.config, self.routes, default)
            )
        return self._tables[mode]

    def registry(self, flow: http.HTTPFlow) -> Registry:
        """The registry a routed flow is for."""
        return self._registries[flow]

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        table = self.table(flow)
        if table is None:
            return
        req = flow.request
        settings = Settings(ctx.options.regmirror_catalog, not self.config.auth.enabled)
        try:
            base = mirror_base(
                flow.client_conn.tls_established, req.host_header or "", *self._forwarded(req)
            )
            verify = lambda query: self.signer.verify(query, time.time())  # noqa: E731
            decision = classify(req, base, table, settings, verify)
        except ValueError as e:  # a malformed host
            return refuse(flow, "router", 400, errors.UNSUPPORTED, str(e))
        except Refused as r:
            if r.route:
                set_route(flow, r.route)
            return refuse(flow, "router", r.status, r.code, r.message, r.detail)
        set_route(flow, decision.route)
        if decision.registry is not None:
            self._registries[flow] = decision.registry
        if decision.route["op"] == ROOT:
            return answer(flow, http.Response.make(301, b"", {"Location": "/v2/"}), "router")
        if decision.path:
            req.path = decision.path
            if decision.route["op"] != names.TOKEN:
                route_to(req, decision.registry.upstream)

    def response(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        resp = flow.response
        if not r or r.get("op") != names.CATALOG or not resp or resp.status_code != 200:
            return
        if resp.stream or flow not in self._registries:
            return
        resp.content = visible_catalog(resp.content or b"", self.registry(flow).allows)

    def _forwarded(self, req: http.Request) -> tuple[str | None, str | None]:
        if not ctx.options.regmirror_trust_forwarded:
            return None, None
        return req.headers.get("X-Forwarded-Proto"), req.headers.get("X-Forwarded-Host")


def route_to(req: http.Request, upstream: Upstream) -> None:
    """Send the request to the upstream; the Host header follows."""
    req.scheme, req.host, req.port = upstream.scheme, upstream.host, upstream.port
    req.host_header = upstream.hostport

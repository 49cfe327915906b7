"""Route client requests to upstream registries: the route table (options and config
file), Docker Hub's `library/`, validation of registry API paths, allow and deny lists,
and the mirror's own answers for what it refuses."""

import asyncio
import logging
import os
import re
from collections.abc import Sequence

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from .. import errors
from ..answers import answer, refusal
from ..flowinfo import KEY, REDIRECT, REJECTED, ROOT, FlowInfo, info
from ..transport.headers import content_length, request_problem
from . import names
from .catalog import Registry
from .config import Config, ConfigError, load_config
from .policy import visible_catalog
from .table import HOST, PATH, NoRoute, Route, Table
from .upstreams import DOCKER_HUB_HOSTS, Upstream, mirror_base, parse_route, parse_upstream

logger = logging.getLogger(__name__)

REDIRECT_PATH = "/_regmirror/redirect"
TOKEN_PREFIX = "/v2/auth/"
CONFIG_POLL = 2.0  # seconds between checks of the config file for changes
MAX_TOKEN_FORM = 64 << 10  # bytes of an OAuth2 token form; real ones are a few hundred

_READ_METHODS = ("GET", "HEAD")
_PREFIXED_CATALOG_RE = re.compile(r"/v2/([^/]+)/_catalog")  # /v2/ghcr.io/_catalog


def reverse_registry(mode: ProxyMode, dockerhub_hosts: Sequence[str]) -> Registry | None:
    """The registry given by `--mode reverse:URL`, or None for other modes."""
    if not isinstance(mode, ReverseMode) or mode.scheme not in ("http", "https"):
        return None
    host, port = mode.address
    upstream = parse_upstream(f"{mode.scheme}://{host}:{port}", dockerhub_hosts)
    return Registry(upstream.hostport, upstream)


class Router:
    def __init__(self) -> None:
        self.config = Config()
        self.routes: dict[str, Registry] = {}
        self.config_mtime = 0.0
        # per listener (--mode): its route table, None outside reverse mode
        self._tables: dict[ProxyMode, Table | None] = {}
        self._watch: asyncio.Task | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_config",
            str,
            "",
            """
            Path of the mirror's TOML configuration (registries, host map, subdomain domain,
            credentials, allow/deny lists, client authentication); see
            regmirror.example.toml. Changes to the file apply without a restart.
            """,
        )
        loader.add_option(
            "regmirror_routes",
            Sequence[str],
            [],
            """
            Client-facing host to upstream registry, as HOST=URL, e.g.
            "hub.mirror.example=https://registry-1.docker.io". Repeat for several
            registries. When set, a host that nothing routes gets 404 with the list of
            routes instead of going to the upstream of --mode reverse:URL.
            """,
        )
        loader.add_option(
            "regmirror_dockerhub_hosts",
            Sequence[str],
            list(DOCKER_HUB_HOSTS),
            """
            Upstream hosts (host or host:port) that get Docker Hub's quirks: single-component
            names such as "nginx" are served as "library/nginx".
            """,
        )
        loader.add_option(
            "regmirror_catalog",
            bool,
            False,
            """
            Serve GET /v2/_catalog, the list of an upstream's repositories, filtered by the
            registry's allow/deny lists; only then does the token proxy ask upstreams for
            the "registry:catalog:*" scope. Off (the default): 403 DENIED, since a catalogue
            can name repositories the mirror does not serve.
            """,
        )
        loader.add_option(
            "regmirror_trust_forwarded",
            bool,
            False,
            """
            Trust X-Forwarded-Proto and X-Forwarded-Host from a TLS-terminating proxy in front
            of the mirror when building URLs handed to clients (token realm, redirects).
            Enable only behind such a proxy.
            """,
        )

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
            self.config = self._load_config()
            self._tables.clear()

    def running(self) -> None:
        self._watch = asyncio.create_task(self._watch_config())

    def done(self) -> None:
        if self._watch:
            self._watch.cancel()

    @command.command("regmirror.reload")
    def reload(self) -> None:
        """Read the mirror's configuration file again."""
        try:
            self.config = self._load_config()
        except exceptions.OptionsError as e:
            logger.error("%s; keeping the previous configuration", e)
        else:
            self._tables.clear()
            logger.info("regmirror: configuration reloaded")

    def _load_config(self) -> Config:
        path = ctx.options.regmirror_config
        if not path:
            return Config()
        try:
            self.config_mtime = os.stat(path).st_mtime
            return load_config(path)
        except (OSError, ConfigError) as e:
            raise exceptions.OptionsError(f"regmirror_config: {e}") from e

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL)
            path = ctx.options.regmirror_config
            try:
                changed = bool(path) and os.stat(path).st_mtime != self.config_mtime
            except OSError:
                changed = False
            if changed:
                self.reload()

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

    def registry(self, flow: http.HTTPFlow, key: str) -> Registry:
        """The registry a routed flow goes to."""
        table = self.table(flow)
        assert table is not None
        return table.registries[key]

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        table = self.table(flow)
        if table is None:
            return
        req = flow.request
        if problem := request_problem(req):
            return reject(flow, problem[0], errors.UNSUPPORTED, problem[1])
        try:
            base = mirror_base(
                flow.client_conn.tls_established, req.host_header or "", *self._forwarded(req)
            )
        except ValueError as e:
            return reject(flow, 400, errors.UNSUPPORTED, str(e))
        info = FlowInfo(mirror=base)
        flow.metadata[KEY] = info
        path = req.path.split("?", 1)[0]
        if path == "/":
            info["op"] = ROOT
            answer(flow, http.Response.make(301, b"", {"Location": "/v2/"}))
            return
        if path == REDIRECT_PATH:
            info["op"] = REDIRECT
            return
        try:
            if path.startswith(TOKEN_PREFIX):
                api, route = names.ApiPath(names.TOKEN), self._token_route(table, path)
            elif m := _PREFIXED_CATALOG_RE.fullmatch(path):
                api, route = names.ApiPath(names.CATALOG), self._prefix_route(table, m[1])
                req.path = "/v2/_catalog" + req.path[len(path) :]
            else:
                api = names.parse_api_path(path)
                if api is None:
                    return reject(flow, 404, errors.UNSUPPORTED, f"unknown endpoint {path[:200]}")
                route = table.resolve(base.split("://")[1], api.name, the_ns(req))
        except names.InvalidRequest as e:
            return reject(flow, 400, e.code, str(e))
        except NoRoute as e:
            # Under client auth the request is not authenticated yet: no listing then.
            listing = None if self.config.auth.enabled else table.listing()
            return reject(flow, 404, errors.NAME_UNKNOWN, str(e), listing)
        upstream = route.registry.upstream
        info.update(
            op=api.kind, registry=route.registry.key, upstream=upstream.base, style=route.style
        )
        if route.prefix:
            info["prefix"] = route.prefix
        if route.name:
            info["name"], info["reference"] = route.name, api.reference
        if api.kind == names.TOKEN:
            if req.method not in ("GET", "POST"):
                return reject(flow, 405, errors.UNSUPPORTED, "token endpoint: GET or POST")
            length = content_length(req.headers)
            if req.method == "POST" and (length is None or length > MAX_TOKEN_FORM):
                return reject(flow, 413, errors.UNSUPPORTED, "token request form too large")
            return
        if api.kind == names.UPLOAD or req.method not in _READ_METHODS:
            return reject(flow, 405, errors.UNSUPPORTED, "this mirror is read-only")
        if api.kind == names.CATALOG and not ctx.options.regmirror_catalog:
            message = "the catalogue is not served (regmirror_catalog)"
            return reject(flow, 403, errors.DENIED, message)
        if route.name and not route.registry.allows(route.name):
            return reject(flow, 403, errors.DENIED, f"{route.name} is not served by this mirror")
        if route.name != api.name:
            req.path = f"/v2/{route.name}/" + req.path[len(f"/v2/{api.name}/") :]
        route_to(req, upstream)

    @staticmethod
    def _token_route(table: Table, path: str) -> Route:
        key = path[len(TOKEN_PREFIX) :]
        if key not in table.names:
            raise NoRoute(f"unknown registry {key[:100]!r}")
        return Route(table.names[key], HOST, "")

    @staticmethod
    def _prefix_route(table: Table, key: str) -> Route:
        if key not in table.names:
            raise NoRoute(f"unknown registry {key[:100]!r}")
        return Route(table.names[key], PATH, "", key)

    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not i or i.get("op") != names.CATALOG or not resp or resp.status_code != 200:
            return
        if resp.stream:
            return
        registry = self.registry(flow, i["registry"])
        resp.content = visible_catalog(resp.content or b"", registry.allows)

    def _forwarded(self, req: http.Request) -> tuple[str | None, str | None]:
        if not ctx.options.regmirror_trust_forwarded:
            return None, None
        return req.headers.get("X-Forwarded-Proto"), req.headers.get("X-Forwarded-Host")


def the_ns(req: http.Request) -> str:
    """containerd's `?ns=ghcr.io`; "" without one. Raises InvalidRequest when it is given
    twice with different values."""
    given = {ns.lower() for ns in req.query.get_all("ns")}
    if len(given) > 1:
        raise names.InvalidRequest(errors.NAME_INVALID, "ns given twice with different values")
    return given.pop() if given else ""


def reject(
    flow: http.HTTPFlow, status: int, code: str, message: str, detail: object = None
) -> None:
    """Answer with a registry error instead of asking the upstream."""
    flow.metadata.setdefault(KEY, FlowInfo())["op"] = REJECTED
    answer(flow, refusal(flow, status, code, message, detail))


def route_to(req: http.Request, upstream: Upstream) -> None:
    """Send the request to the upstream; the Host header follows."""
    req.scheme, req.host, req.port = upstream.scheme, upstream.host, upstream.port
    req.host_header = upstream.hostport

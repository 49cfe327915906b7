"""Route client requests to the upstream registry: host table, Docker Hub's `library/`,
validation of registry API paths, and the mirror's own answers for what it refuses."""

import logging
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode

from . import errors, names
from .flowinfo import KEY, REDIRECT, REJECTED, ROOT, FlowInfo
from .routes import DOCKER_HUB_HOSTS, Upstream, lookup, mirror_base, parse_route, parse_upstream

logger = logging.getLogger(__name__)

REDIRECT_PATH = "/_regmirror/redirect"

_READ_METHODS = ("GET", "HEAD")


def reverse_upstream(flow: http.HTTPFlow, dockerhub_hosts: Sequence[str]) -> Upstream | None:
    """The upstream given by `--mode reverse:URL`, or None for other modes."""
    mode = flow.client_conn.proxy_mode
    if not isinstance(mode, ReverseMode) or mode.scheme not in ("http", "https"):
        return None
    host, port = mode.address
    return parse_upstream(f"{mode.scheme}://{host}:{port}", dockerhub_hosts)


class Router:
    def __init__(self) -> None:
        self.routes: dict[str, Upstream] = {}

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_routes",
            Sequence[str],
            [],
            """
            Client-facing host to upstream registry, as HOST=URL, e.g.
            "hub.mirror.example=https://registry-1.docker.io". Repeat for several
            registries. Empty: every request goes to the upstream of --mode reverse:URL.
            When set, a host not listed gets 404 with the list of routes.
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
            routes: dict[str, Upstream] = {}
            for spec in ctx.options.regmirror_routes:
                try:
                    host, upstream = parse_route(spec, ctx.options.regmirror_dockerhub_hosts)
                except ValueError as e:
                    raise exceptions.OptionsError(f"regmirror_routes: {e}") from e
                routes[host] = upstream
            self.routes = routes

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        default = reverse_upstream(flow, ctx.options.regmirror_dockerhub_hosts)
        if default is None:
            return
        req = flow.request
        try:
            base = mirror_base(
                flow.client_conn.tls_established,
                req.host_header or "",
                *self._forwarded(req),
            )
        except ValueError as e:
            return self._reject(flow, 400, errors.UNSUPPORTED, str(e))
        upstream = lookup(self.routes, base.split("://", 1)[1]) if self.routes else default
        if upstream is None:
            listing = [f"{h} -> {u.base}" for h, u in sorted(self.routes.items())]
            return self._reject(
                flow, 404, errors.NAME_UNKNOWN, f"no route for host {req.host_header}", listing
            )
        info = FlowInfo(mirror=base, upstream=upstream.base, dockerhub=upstream.dockerhub)
        flow.metadata[KEY] = info
        path = req.path.split("?", 1)[0]
        if path == "/":
            info["op"] = ROOT
            flow.response = http.Response.make(301, b"", {"Location": "/v2/"})
            return
        if path == REDIRECT_PATH:
            info["op"] = REDIRECT
            return
        try:
            api = names.parse_api_path(path)
        except names.InvalidRequest as e:
            return self._reject(flow, 400, e.code, str(e))
        if api is None:
            return self._reject(flow, 404, errors.UNSUPPORTED, f"unknown endpoint {path[:200]}")
        info["op"] = api.kind
        if api.kind == names.TOKEN:
            if req.method not in ("GET", "POST"):
                return self._reject(flow, 405, errors.UNSUPPORTED, "token endpoint: GET or POST")
            return
        if api.kind == names.UPLOAD or req.method not in _READ_METHODS:
            return self._reject(flow, 405, errors.UNSUPPORTED, "this mirror is read-only")
        name = names.with_library(api.name) if upstream.dockerhub else api.name
        if api.name:
            info["name"], info["reference"] = name, api.reference
        if name != api.name:
            prefix = f"/v2/{api.name}/"
            req.path = f"/v2/{name}/" + req.path[len(prefix) :]
        route_to(req, upstream)

    def _forwarded(self, req: http.Request) -> tuple[str | None, str | None]:
        if not ctx.options.regmirror_trust_forwarded:
            return None, None
        return req.headers.get("X-Forwarded-Proto"), req.headers.get("X-Forwarded-Host")

    @staticmethod
    def _reject(
        flow: http.HTTPFlow, status: int, code: str, message: str, detail: object = None
    ) -> None:
        flow.metadata.setdefault(KEY, FlowInfo())["op"] = REJECTED
        flow.response = errors.error_response(
            status, code, message, detail, head=flow.request.method == "HEAD"
        )


def route_to(req: http.Request, upstream: Upstream) -> None:
    """Send the request to the upstream; the Host header follows."""
    req.scheme, req.host, req.port = upstream.scheme, upstream.host, upstream.port
    req.host_header = upstream.hostport

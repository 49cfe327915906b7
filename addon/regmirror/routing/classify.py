"""What a request is, where it goes, and whether the mirror serves it: the router's
decision, as a function of the request, the route table and the settings. Raises Refused
for what the mirror answers itself with a registry error; nothing here touches the flow."""

import re
from collections.abc import Callable
from typing import NamedTuple

from mitmproxy import http

from .. import errors
from ..record import REDIRECT, ROOT, Route
from ..transport.headers import content_length, request_problem
from ..transport.signing import REDIRECT_PATH, Origin
from . import names
from .catalog import Registry
from .table import HOST, PATH, NoRoute, Resolved, Table

TOKEN_PREFIX = "/v2/auth/"
MAX_TOKEN_FORM = 64 << 10  # bytes of an OAuth2 token form; real ones are a few hundred
_READ_METHODS = ("GET", "HEAD")
_PREFIXED_CATALOG_RE = re.compile(r"/v2/([^/]+)/_catalog")  # /v2/ghcr.io/_catalog


Verifier = Callable[[str], Origin]  # checks a signed redirect query (transport.signing)


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.route: Route | None = None  # what the request was, when that much is known


class Settings(NamedTuple):
    catalog: bool  # regmirror_catalog
    listing: bool  # whether a 404 lists the routes (not under client auth)


class Decision(NamedTuple):
    route: Route
    registry: Registry | None  # None: answered by the mirror (root) or not an API request
    path: str  # the upstream path and query ("" when nothing goes upstream)


def the_ns(req: http.Request) -> str:
    """containerd's `?ns=ghcr.io`; "" without one. Raises InvalidRequest when it is given
    twice with different values."""
    given = {ns.lower() for ns in req.query.get_all("ns")}
    if len(given) > 1:
        raise names.InvalidRequest(errors.NAME_INVALID, "ns given twice with different values")
    return given.pop() if given else ""


def classify(
    req: http.Request,
    base: str,
    table: Table,
    settings: Settings,
    verify: Verifier,
) -> Decision:
    """The decision for a request reaching the mirror at `base` (its URL as the client used
    it). `verify` checks a signed redirect query. Raises Refused."""
    if problem := request_problem(req):
        raise Refused(problem[0], errors.UNSUPPORTED, problem[1])
    path = req.path.split("?", 1)[0]
    if path == "/":
        return Decision(Route(mirror=base, op=ROOT), None, "")
    if path == REDIRECT_PATH:
        return _redirect(req, base, table, verify)
    try:
        if path.startswith(TOKEN_PREFIX):
            api, route = names.ApiPath(names.TOKEN), _by_key(table, path[len(TOKEN_PREFIX) :])
        elif m := _PREFIXED_CATALOG_RE.fullmatch(path):
            api, route = names.ApiPath(names.CATALOG), _by_key(table, m[1], PATH)
        else:
            api = names.parse_api_path(path)
            if api is None:
                raise Refused(404, errors.UNSUPPORTED, f"unknown endpoint {path[:200]}")
            route = table.resolve(base.split("://")[1], api.name, the_ns(req))
    except names.InvalidRequest as e:
        raise Refused(400, e.code, str(e)) from None
    except NoRoute as e:
        listing = table.listing() if settings.listing else None
        raise Refused(404, errors.NAME_UNKNOWN, str(e), listing) from None
    registry = route.registry
    record = Route(
        mirror=base, op=api.kind, registry=registry.key, upstream=registry.upstream.base,
        style=route.style,
    )  # fmt: skip
    if route.prefix:
        record["prefix"] = route.prefix
    if route.name:
        record["name"], record["reference"] = route.name, api.reference
    try:
        _check(req, api, route.name, registry, settings)
    except Refused as refused:
        refused.route = record
        raise
    upstream_path = req.path
    if api.kind == names.CATALOG:
        upstream_path = "/v2/_catalog" + req.path[len(path) :]
    elif route.name != api.name:
        upstream_path = f"/v2/{route.name}/" + req.path[len(f"/v2/{api.name}/") :]
    return Decision(record, registry, upstream_path)


def _check(
    req: http.Request, api: names.ApiPath, name: str, registry: Registry, settings: Settings
) -> None:
    """Refuse what a pull mirror does not serve."""
    if api.kind == names.TOKEN:
        if req.method not in ("GET", "POST"):
            raise Refused(405, errors.UNSUPPORTED, "token endpoint: GET or POST")
        length = content_length(req.headers)
        if req.method == "POST" and (length is None or length > MAX_TOKEN_FORM):
            raise Refused(413, errors.UNSUPPORTED, "token request form too large")
        return
    if api.kind == names.UPLOAD or req.method not in _READ_METHODS:
        raise Refused(405, errors.UNSUPPORTED, "this mirror is read-only")
    if api.kind == names.CATALOG and not settings.catalog:
        raise Refused(403, errors.DENIED, "the catalogue is not served (regmirror_catalog)")
    if name and not registry.allows(name):
        raise Refused(403, errors.DENIED, f"{name} is not served by this mirror")


def _redirect(req: http.Request, base: str, table: Table, verify: Verifier) -> Decision:
    """A followed redirect: the route of the request that the upstream redirected."""
    if req.method not in _READ_METHODS:
        raise Refused(405, errors.UNSUPPORTED, "GET or HEAD only")
    try:
        origin = verify(req.path.partition("?")[2])
    except ValueError as e:
        raise Refused(403, errors.DENIED, str(e)) from None
    registry = table.names.get(origin.registry)
    if registry is None:
        raise Refused(403, errors.DENIED, f"no registry {origin.registry[:100]!r}")
    route = Route(
        mirror=base, op=origin.op, registry=registry.key, upstream=registry.upstream.base,
        style=HOST, via=REDIRECT, target=origin.target,
    )  # fmt: skip
    if origin.name:
        route["name"], route["reference"] = origin.name, origin.reference
    if origin.provenance:
        route["provenance"] = origin.provenance
    return Decision(route, registry, "")


def _by_key(table: Table, key: str, style: str = HOST) -> Resolved:
    """A registry named by its key: in the token path `/v2/auth/ghcr.io`, or as the path
    prefix of a catalogue."""
    if key not in table.names:
        raise NoRoute(f"unknown registry {key[:100]!r}")
    return Resolved(table.names[key], style, "", key if style == PATH else "")

"""A short comment on every flow, shown in mitmweb's list: which registry operation it was,
for which image, and how it ended (`manifest HEAD docker.io/library/nginx:1`,
`blob docker.io/library/nginx@sha256:ab12cd34ef56… 27.1 MB`); the method is named when it
is not GET. Refusals are marked :no_entry:, failures :warning:.

Select one image's flows with `~comment library/nginx`: redirect flows (a blob fetched from
the upstream's CDN) name the image of the blob that was redirected.
"""

import urllib.parse
from collections import OrderedDict

from mitmproxy import ctx, http

from .. import flowinfo
from ..auth.challenge import parse_challenges
from ..flowinfo import FlowInfo, info
from ..routing import names
from ..routing.router import REDIRECT_PATH
from .oplog import (
    error_code,
    human_size,
    image,
    printable,
    registry,
    response_size,
    token_scopes,
)

DENIED = ":no_entry:"  # the mirror, an upstream or a token service refused the request
FAILED = ":warning:"  # not found, rate-limited, upstream errors, broken connections
MAX_LINKS = 4096  # redirects handed to clients but not yet followed, remembered per target
MAX_DETAIL = 80

SIZED = (names.BLOB, flowinfo.REDIRECT)


def label(method: str, path: str, i: FlowInfo, scopes: list[str], linked: str = "") -> str:
    """What the client asked for. `linked`: the image whose redirect a flow follows."""
    op = i.get("op", "")
    match op:
        case names.MANIFEST | names.BLOB | names.REFERRERS:
            shown = "" if method == "GET" else f" {method}"
            return f"{op}{shown} {image(i, short=True)}"
        case names.TAGS:
            return f"tags {image(i, short=True)}"
        case names.PING | names.CATALOG:
            return f"{op} {registry(i)}"
        case names.TOKEN:
            return "token " + (" ".join(scopes) or "(no scope)")
        case flowinfo.REDIRECT:
            return " ".join(filter(None, ["redirect ->", i.get("target", "?"), linked]))
        case flowinfo.ROOT:
            return "root"
    return f"rejected {method} {path[:MAX_DETAIL]}"


def outcome(
    op: str, status: int, size: int, code: str, target: str, challenged: bool
) -> tuple[str, str]:
    """(comment suffix, mark) for a response. `target`: where a redirect leads;
    `challenged`: a 401 that sends an anonymous client to fetch a token."""
    if 200 <= status < 300:
        return (f" {human_size(size)}" if op in SIZED else ""), ""
    if 300 <= status < 400:
        return " ".join(filter(None, [" ->", str(status), target])), ""
    if status == 401 and challenged:
        return " -> 401 challenge", ""
    suffix = " ".join(filter(None, [" ->", str(status), code]))
    if status in (401, 403) or op == flowinfo.REJECTED:
        return suffix, DENIED
    return suffix, FAILED


def proxied_target(location: str) -> str:
    """The target of a mirror redirect (`/_regmirror/redirect?u=TARGET&...`), else ""."""
    u = urllib.parse.urlsplit(location)
    if u.path != REDIRECT_PATH:
        return ""
    return urllib.parse.parse_qs(u.query).get("u", [""])[0]


def is_bearer_challenge(header: str) -> bool:
    """A Bearer challenge sends an anonymous client to fetch a token: a normal step."""
    try:
        return any(c.is_bearer for c in parse_challenges(header))
    except ValueError:
        return False


class Annotations:
    def __init__(self) -> None:
        # redirect target URL -> image of the blob or manifest that was redirected
        self.links: OrderedDict[str, str] = OrderedDict()

    def running(self) -> None:
        # mitmweb lists comments only in a column it hides by default.
        if "web_columns" in ctx.options and not ctx.options.has_changed("web_columns"):
            ctx.options.update(web_columns=[*ctx.options.web_columns, "comment"])

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or "op" not in i:
            return
        linked = self.links.pop(flow.request.url, "") if i["op"] == flowinfo.REDIRECT else ""
        req = flow.request
        flow.comment = printable(label(req.method, req.path, i, token_scopes(req), linked))

    def request(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or i.get("op") != names.TOKEN or flow.request.method != "POST":
            return
        # The OAuth2 form, with its scopes, is read only now.
        flow.comment = printable(label("POST", flow.request.path, i, token_scopes(flow.request)))

    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not i or not resp or "op" not in i:
            return
        location = resp.headers.get("Location", "")
        proxied = proxied_target(location)
        target = proxied or location
        challenged = "Authorization" not in flow.request.headers and is_bearer_challenge(
            resp.headers.get("WWW-Authenticate", "")
        )
        suffix, mark = outcome(
            i["op"],
            resp.status_code,
            response_size(resp),
            error_code(resp),
            urllib.parse.urlsplit(target).netloc or target,
            challenged,
        )
        flow.comment += printable(suffix)
        if mark:
            flow.marked = mark
        if proxied and i["op"] in names.API_KINDS:
            self._link(proxied, image(i, short=True))

    def error(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or not flow.error:
            return
        flow.comment += printable(f" -> failed: {flow.error.msg[:MAX_DETAIL]}")
        flow.marked = FAILED

    def _link(self, target: str, name: str) -> None:
        self.links[target] = name
        while len(self.links) > MAX_LINKS:
            self.links.popitem(last=False)

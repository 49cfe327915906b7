"""One description of every registry operation, in the words that the log line, the flow
comment and the metric labels all use: `pull manifest docker.io/library/nginx:1 [path]`,
`check blob docker.io/library/nginx@sha256:ab12cd34ef56…`, `token repository:a:pull`, and
how it ended: `-> 200 1.2 kB`, `-> 401 challenge`, `-> 403 DENIED by router`. Pure."""

import json
import urllib.parse
from typing import NamedTuple

from mitmproxy import http

from ..auth.challenge import parse_challenges
from ..record import ROOT, Outcome, Route
from ..routing import names
from ..transport.headers import content_length
from ..transport.signing import REDIRECT_PATH

# The metric label and the object word of each operation.
OBJECTS = {
    names.PING: "ping", names.TOKEN: "token", names.CATALOG: "catalog",
    names.MANIFEST: "manifest", names.BLOB: "blob", names.TAGS: "tags",
    names.REFERRERS: "referrers", names.UPLOAD: "upload", ROOT: "root",
}  # fmt: skip
SIZED = ("blob",)  # objects whose size the comment shows


class Operation(NamedTuple):
    verb: str  # pull, check, list, token, ping, root, request
    object: str  # manifest, blob, tags, referrers, token, ping, catalog, root; "" if none
    image: str  # docker.io/library/nginx:1, or the registry for ping and catalog
    detail: str  # [path] or [ns], the scopes of a token request, "via HOST", the path


def printable(text: str) -> str:
    """`text` with every control character, line separator and undecodable byte escaped
    (`\\\\n`, `\\\\x1b`, `\\\\udcff`), so that what a client or an upstream sent can never
    forge a log line or a flow comment."""
    return text if text.isprintable() else "".join(map(_escape, text))


def _escape(c: str) -> str:
    return c if c.isprintable() else c.encode("unicode_escape").decode("ascii")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError  # pragma: no cover


def registry(r: Route) -> str:
    """The registry as people name it: `docker.io`, `ghcr.io`, `127.0.0.1:5001`."""
    return r.get("registry") or r.get("upstream", "?").split("://", 1)[-1]


def image(r: Route, short: bool = False) -> str:
    """`docker.io/library/nginx:1` or `docker.io/library/nginx@sha256:…`; `short` cuts a
    digest to its first 12 hex digits."""
    ref = r.get("reference", "")
    base = f"{registry(r)}/{r.get('name', '?')}"
    if not ref:
        return base
    if ":" not in ref:
        return f"{base}:{ref}"
    return f"{base}@{ref[:19]}…" if short else f"{base}@{ref}"


def token_scopes(req: http.Request) -> list[str]:
    """The scopes of a token request: query parameters, or the OAuth2 form's `scope`."""
    if req.method == "POST":
        return " ".join(req.urlencoded_form.get_all("scope")).split()
    return req.query.get_all("scope")


def operation(
    method: str, r: Route | None, scopes: list[str], path: str, short: bool = False
) -> Operation:
    """What the client asked for, in registry terms."""
    if not r:
        return Operation("request", "", "", f"{method} {path[:120]}")
    op = r.get("op", "")
    obj = OBJECTS.get(op, "")
    detail = f"[{r['style']}]" if r.get("style", "host") != "host" else ""
    if r.get("via"):
        detail = f"via {urllib.parse.urlsplit(r.get('target', '')).netloc}"
    match op:
        case names.MANIFEST | names.BLOB:
            verb, shown = ("check" if method == "HEAD" else "pull"), image(r, short or op == "blob")
        case names.TAGS | names.REFERRERS:
            verb, shown = "list", image(r, short or op == names.REFERRERS)
        case names.TOKEN:
            verb, obj, shown, detail = "token", "", "", " ".join(scopes) or "(no scope)"
        case names.PING | names.CATALOG:
            verb, shown = ("ping" if op == names.PING else "list"), registry(r)
            obj = "" if op == names.PING else obj
        case _:
            verb, obj, shown = ("root" if op == ROOT else "request"), "", ""
            detail = "redirect" if op == ROOT else f"{method} {path[:120]}"
    return Operation(verb, obj, shown, detail)


def words(op: Operation) -> str:
    return printable(" ".join(w for w in op if w))


def metric_label(r: Route | None) -> str:
    return OBJECTS.get(r.get("op", ""), "") if r else ""


def error_code(resp: http.Response) -> str:
    """The first registry error code of a small, buffered error body."""
    body = resp.raw_content
    if resp.status_code < 400 or resp.stream or not body or len(body) > 8192:
        return ""
    try:
        return str(json.loads(body)["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def response_size(resp: http.Response) -> int:
    length = content_length(resp.headers)
    return len(resp.raw_content or b"") if length is None else length


def challenged(flow: http.HTTPFlow) -> bool:
    """A 401 whose Bearer challenge sends an anonymous client to fetch a token: a step of
    every pull, not a refusal."""
    resp = flow.response
    if not resp or resp.status_code != 401 or "Authorization" in flow.request.headers:
        return False
    try:
        return any(c.is_bearer for c in parse_challenges(resp.headers.get("WWW-Authenticate", "")))
    except ValueError:
        return False


def redirect_target(location: str) -> str:
    """Where a `Location` leads: for a mirror redirect URL, the host it carries."""
    u = urllib.parse.urlsplit(location)
    if u.path == REDIRECT_PATH:
        u = urllib.parse.urlsplit(urllib.parse.parse_qs(u.query).get("u", [""])[0])
    return u.netloc or location


def ending(flow: http.HTTPFlow, result: Outcome) -> str:
    """How an answered operation ended: `-> 200 1.2 kB`, `-> 307 cdn.example`,
    `-> 401 challenge`, `-> 403 DENIED by router`, `-> 200 by token cache`."""
    resp = flow.response
    assert resp is not None
    parts = ["->", str(resp.status_code)]
    if 300 <= resp.status_code < 400 and "Location" in resp.headers:
        parts.append(redirect_target(resp.headers["Location"]))
    elif challenged(flow):
        parts.append("challenge")
    elif code := error_code(resp):
        parts.append(code)
    if by := result.get("answered_by"):
        parts.append(f"by {by}")
    if result.get("offline"):
        parts.append("offline")
    if cache := result.get("cache"):
        parts.append(cache if cache.startswith("fill failed") else f"cache {cache}")
    if 200 <= resp.status_code < 300 and flow.request.method != "HEAD":
        parts.append(human_size(response_size(resp)))
    return printable(" ".join(parts))

"""One readable log line per registry operation:
`pull manifest library/nginx:1-alpine -> 200 1.2 kB 35 ms`. Never logs credentials."""

import json
import logging
import time

from mitmproxy import http

from .. import flowinfo
from ..flowinfo import FlowInfo, info
from ..routing import names
from ..transport.headers import content_length

logger = logging.getLogger(__name__)


def printable(text: str) -> str:
    """`text` with every control character, line separator and undecodable byte escaped
    (`\\n`, `\\x1b`, `\\udcff`), so that what a client or an upstream sent can never
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


def registry(i: FlowInfo) -> str:
    """The registry as people name it: `docker.io`, `ghcr.io`, `127.0.0.1:5001`."""
    return i.get("registry") or i.get("upstream", "?").split("://", 1)[-1]


def image(i: FlowInfo, short: bool = False) -> str:
    """`docker.io/library/nginx:1` or `docker.io/library/nginx@sha256:…`; `short` cuts a
    digest to its first 12 hex digits."""
    ref = i.get("reference", "")
    base = f"{registry(i)}/{i.get('name', '?')}"
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


def describe(method: str, i: FlowInfo, scopes: list[str], path: str) -> str:
    """What the client asked for, in registry terms: `pull manifest docker.io/library/nginx:1`,
    with `[path]` or `[ns]` when the client named the registry that way. One printable line:
    line breaks, terminal escapes and undecodable bytes a client sent come escaped."""
    line = _operation(method, i, scopes, path)
    return printable(line)


def _operation(method: str, i: FlowInfo, scopes: list[str], path: str) -> str:
    op = i.get("op", "")
    style = f" [{i['style']}]" if i.get("style", "host") != "host" else ""
    verb = "check" if method == "HEAD" else "pull"
    match op:
        case names.MANIFEST:
            return f"{verb} manifest {image(i)}{style}"
        case names.BLOB:
            return f"{verb} blob {image(i, short=True)}{style}"
        case names.TAGS:
            return f"list tags {image(i)}{style}"
        case names.REFERRERS:
            return f"list referrers {image(i, short=True)}{style}"
        case names.TOKEN:
            return "token " + (" ".join(scopes) if scopes else "(no scope)")
        case names.PING | names.CATALOG:
            return op
        case flowinfo.REDIRECT:
            return f"follow redirect -> {i.get('target', '?')}"
        case flowinfo.ROOT:
            return "root redirect"
    return f"reject {method} {path[:120]!r}"


def error_code(resp: http.Response) -> str:
    """The first registry error code of a small, buffered error body."""
    if (
        resp.status_code < 400
        or resp.stream
        or not resp.raw_content
        or len(resp.raw_content) > 8192
    ):
        return ""
    try:
        return str(json.loads(resp.raw_content)["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def response_size(resp: http.Response) -> int:
    length = content_length(resp.headers)
    return len(resp.raw_content or b"") if length is None else length


class OpLog:
    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or not flow.response:
            return
        resp = flow.response
        ms = ((resp.timestamp_end or time.time()) - flow.request.timestamp_start) * 1000
        parts = [self._describe(flow, i), "->", str(resp.status_code)]
        if code := error_code(resp):
            parts.append(code)
        parts += [human_size(response_size(resp)), f"{ms:.0f} ms"]
        level = logging.WARNING if resp.status_code >= 500 else logging.INFO
        logger.log(level, printable(" ".join(parts)))

    def error(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or not flow.error:
            return
        logger.warning(printable(f"{self._describe(flow, i)} -> failed: {flow.error.msg}"))

    @staticmethod
    def _describe(flow: http.HTTPFlow, i: FlowInfo) -> str:
        scopes = token_scopes(flow.request) if i.get("op") == names.TOKEN else []
        return describe(flow.request.method, i, scopes, flow.request.path)

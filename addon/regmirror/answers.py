"""Every answer the mirror makes itself, instead of asking an upstream.

`answer()` is the one place that sets such a response: when mitmproxy is already streaming
the request body (a write with a body over `stream_large_bodies`), it cannot answer before
the body is through (mitmproxy 11 raises "Can't set a response and enable streaming"), and
reading a body the mirror refuses would let a client make it read forever. The connection
is closed instead, and the log says why.
"""

import logging

from mitmproxy import http

from . import errors
from .record import outcome

logger = logging.getLogger(__name__)


def answer(flow: http.HTTPFlow, response: http.Response, by: str | None) -> None:
    """Answer `flow` with `response` on behalf of `by`, never asking an upstream. `by` None:
    no answer of the mirror's own: the status endpoints (not a registry operation, which gets
    no record: no log line, no flow comment, not counted), or a cache hit (counted as the
    cache's, outcome "cache")."""
    if by:
        outcome(flow)["answered_by"] = by
    if flow.request.stream and flow.live:
        logger.info("%s %s: refused while its body streams in; connection closed",
                    flow.request.method, flow.request.path[:100])  # fmt: skip
        flow.kill()
        return
    flow.response = response


def refuse(
    flow: http.HTTPFlow,
    by: str,
    status: int,
    code: str,
    message: str,
    detail: object = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with a registry error instead of asking the upstream."""
    outcome(flow)["refused"] = message
    answer(flow, refusal(flow, status, code, message, detail, headers), by)


def bad_upstream(flow: http.HTTPFlow, reason: str) -> None:
    """The upstream's answer cannot be passed on (a broken challenge): the client gets a
    502 with `reason` once the answer is complete (replace_bad_upstream)."""
    outcome(flow).setdefault("bad_upstream", reason)


def replace_bad_upstream(flow: http.HTTPFlow) -> None:
    """In `response`: replace an answer marked by bad_upstream() with the 502."""
    reason = outcome(flow).get("bad_upstream")
    if reason and flow.response is not None and not flow.response.stream:
        flow.response = refusal(flow, 502, errors.UNAVAILABLE, reason)


def refusal(
    flow: http.HTTPFlow,
    status: int,
    code: str,
    message: str,
    detail: object = None,
    headers: dict[str, str] | None = None,
) -> http.Response:
    """A registry error for `flow` (no body for HEAD, with its length)."""
    resp = errors.error_response(status, code, message, detail, head=flow.request.method == "HEAD")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    if status == 429:
        resp.reason = "Too Many Requests"  # not in mitmproxy's table of reasons
    return resp

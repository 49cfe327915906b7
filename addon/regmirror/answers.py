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

logger = logging.getLogger(__name__)


def answer(flow: http.HTTPFlow, response: http.Response) -> None:
    """Answer `flow` with `response`, never asking an upstream."""
    if flow.request.stream and flow.live:
        logger.info("%s %s: refused while its body streams in; connection closed",
                    flow.request.method, flow.request.path[:100])  # fmt: skip
        flow.kill()
        return
    flow.response = response


def refusal(
    flow: http.HTTPFlow,
    status: int,
    code: str,
    message: str,
    detail: object = None,
    headers: dict[str, str] | None = None,
) -> http.Response:
    """A registry error for `flow` (no body for HEAD, with its length)."""
    resp = errors.error_response(
        status, code, message, detail, head=flow.request.method == "HEAD"
    )
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp

"""mitmproxy's own error answers (unreachable upstream, timeouts, protocol errors) in the
registry's JSON error format. patches.py puts these in place of mitmproxy's HTML pages."""

import contextvars

from mitmproxy import http
from mitmproxy.net.http import http1, status_codes

from .. import errors

# The message of the error answer mitmproxy is about to send for the flow whose `error` hook
# runs in this task (hooks and the answer that follows them share an asyncio task).
_message: contextvars.ContextVar[str] = contextvars.ContextVar("regmirror_error", default="")


def error_page(status: int, message: str) -> tuple[int, bytes]:
    """Status and registry error body for an answer mitmproxy generates itself."""
    if "timed out" in message or "timeout" in message.lower():
        status = 504
    code = errors.UNAVAILABLE if status >= 500 else errors.UNSUPPORTED
    reason = status_codes.RESPONSES.get(status, "error")
    return status, errors.error_body(code, f"{reason}: {message}" if message else reason)


def say_next(message: str) -> None:
    """Use `message` for the next error answer mitmproxy builds in this task."""
    _message.set(message)


def _our_message(message: str) -> str:
    ours = _message.get()
    _message.set("")
    return ours or message


def http1_error_response(status_code: int, message: str = "") -> bytes:
    """In place of `mitmproxy.proxy.layers.http._http1.make_error_response`."""
    status, body = error_page(status_code, _our_message(message))
    resp = http.Response.make(
        status,
        body,
        {"Content-Type": "application/json; charset=utf-8", "Connection": "close"},
    )
    return http1.assemble_response(resp)


def http2_error_body(status_code: int, message: str) -> bytes:
    """In place of `mitmproxy.proxy.layers.http._http2.format_error`."""
    return error_page(status_code, _our_message(message))[1]

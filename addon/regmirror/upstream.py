"""The mitmproxy settings the mirror depends on, and upstream connections: TLS name,
connect timeout, and registry-format answers when an upstream cannot be reached."""

import asyncio
import ipaddress
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http import http1, status_codes
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import _http1, _http2

from . import errors

logger = logging.getLogger(__name__)

# Settings the mirror cannot work without: the client's Host header routes requests and
# builds the URLs handed back; upstreams are chosen per request; large bodies stream.
REQUIRED = {"keep_host_header": True, "connection_strategy": "lazy"}
DEFAULT_STREAM_LARGE_BODIES = "1m"
REACHABLE_TTL = 60.0  # seconds an upstream address counts as reachable after a connect


def error_page(status: int, message: str) -> tuple[int, bytes]:
    """Status and registry error body for an answer mitmproxy generates itself."""
    if "timed out" in message or "timeout" in message.lower():
        status = 504
    code = errors.UNAVAILABLE if status >= 500 else errors.UNSUPPORTED
    reason = status_codes.RESPONSES.get(status, "error")
    return status, errors.error_body(code, f"{reason}: {message}" if message else reason)


def _http1_error_response(status_code: int, message: str = "") -> bytes:
    status, body = error_page(status_code, message)
    resp = http.Response.make(
        status,
        body,
        {"Content-Type": "application/json; charset=utf-8", "Connection": "close"},
    )
    return http1.assemble_response(resp)


def _http2_error_body(status_code: int, message: str) -> bytes:
    return error_page(status_code, message)[1]


def install_error_pages() -> None:
    """mitmproxy answers unreachable upstreams with an HTML page; clients expect the
    registry's JSON error format. mitmproxy 11 has no hook for this answer, so the two
    module-level functions that build it are replaced."""
    _http1.make_error_response = _http1_error_response
    _http2.format_error = _http2_error_body


class UpstreamConnections:
    def __init__(self) -> None:
        self.reachable: dict[tuple[str, int], float] = {}

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_upstream_timeout",
            float,
            15.0,
            """
            Seconds to wait for an upstream registry (or token realm, or redirect target) to
            accept a connection. A slower upstream gets 504 in the registry's error format.
            """,
        )
        install_error_pages()

    def configure(self, updated: set[str]) -> None:
        if "regmirror_upstream_timeout" in updated and ctx.options.regmirror_upstream_timeout <= 0:
            raise exceptions.OptionsError("regmirror_upstream_timeout must be positive")
        wrong = {k: v for k, v in REQUIRED.items() if getattr(ctx.options, k) != v}
        if ctx.options.stream_large_bodies is None:
            wrong["stream_large_bodies"] = DEFAULT_STREAM_LARGE_BODIES
        if wrong:
            logger.info("regmirror sets %s", ", ".join(f"{k}={v}" for k, v in wrong.items()))
            ctx.options.update(**wrong)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.error or not data.server.address:
            return
        host, port = data.server.address[:2]
        # keep_host_header would otherwise send the client's SNI (the mirror's name).
        data.server.sni = None if _is_ip(host) else host
        if self.reachable.get((host, port), 0) > time.monotonic():
            return
        timeout = ctx.options.regmirror_upstream_timeout
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            data.server.error = f"connection to {host}:{port} timed out after {timeout:g} s"
        except OSError as e:
            data.server.error = f"cannot connect to {host}:{port}: {e.strerror or e}"
        else:
            writer.close()
            self.reachable[(host, port)] = time.monotonic() + REACHABLE_TTL


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

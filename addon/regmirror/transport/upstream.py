"""The mitmproxy settings the mirror depends on, and upstream connections: TLS name,
connect and response timeouts (their answers: error_pages.py)."""

import asyncio
import ipaddress
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from ..record import outcome, route
from . import error_pages
from .patches import close_server_connection

logger = logging.getLogger(__name__)

# Settings the mirror cannot work without: the client's Host header routes requests and
# builds the URLs handed back; upstreams are chosen per request; large bodies stream.
REQUIRED = {"keep_host_header": True, "connection_strategy": "lazy"}
DEFAULT_STREAM_LARGE_BODIES = "1m"
REACHABLE_TTL = 60.0  # seconds an upstream address counts as reachable after a connect


class UpstreamConnections:
    def __init__(self) -> None:
        self.reachable: dict[tuple[str, int], float] = {}
        self.waiting: dict[str, asyncio.TimerHandle] = {}  # flow id -> its response timeout

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_upstream_timeout",
            int,
            15,
            """
            Seconds to wait for an upstream registry (or token realm, or redirect target) to
            accept a connection. A slower upstream gets 504 in the registry's error format.
            """,
        )
        loader.add_option(
            "regmirror_response_timeout",
            int,
            60,
            """
            Seconds to wait for an upstream's response headers once a request is sent. Then
            the mirror closes that upstream connection and the client gets 504 (502 over
            HTTP/2) in the registry's error format. 0: wait as long as mitmproxy does.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if "regmirror_upstream_timeout" in updated and ctx.options.regmirror_upstream_timeout <= 0:
            raise exceptions.OptionsError("regmirror_upstream_timeout must be positive")
        if "regmirror_response_timeout" in updated and ctx.options.regmirror_response_timeout < 0:
            raise exceptions.OptionsError("regmirror_response_timeout must be 0 or more")
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
        if error := await self.unreachable(host, port):
            data.server.error = error

    async def unreachable(self, host: str, port: int, remembered: bool = True) -> str | None:
        """Why `host:port` cannot be connected to now, or None. A success is remembered for
        a while; `remembered=False` asks anew (to tell an outage at once)."""
        if remembered and self.reachable.get((host, port), 0) > time.monotonic():
            return None
        timeout = ctx.options.regmirror_upstream_timeout
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            return f"connection to {host}:{port} timed out after {timeout:g} s"
        except OSError as e:
            return f"cannot connect to {host}:{port}: {e.strerror or e}"
        writer.close()
        self.reachable[(host, port)] = time.monotonic() + REACHABLE_TTL
        return None

    def request(self, flow: http.HTTPFlow) -> None:
        timeout = ctx.options.regmirror_response_timeout
        if flow.response or flow.error or not flow.live or not timeout or route(flow) is None:
            return
        self.waiting[flow.id] = asyncio.get_running_loop().call_later(timeout, self._expire, flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if timer := self.waiting.pop(flow.id, None):
            timer.cancel()

    def error(self, flow: http.HTTPFlow) -> None:
        self.responseheaders(flow)
        timed_out = outcome(flow).get("timeout") if route(flow) else None
        if timed_out and flow.error and not flow.response:
            flow.error.msg = timed_out
            error_pages.say_next(timed_out)

    def _expire(self, flow: http.HTTPFlow) -> None:
        """No response headers in time: close the upstream connection. mitmproxy then fails
        the flow, and its error answer carries the timeout (see `error`)."""
        self.waiting.pop(flow.id, None)
        if flow.response or flow.error or not flow.live:
            return
        timeout = ctx.options.regmirror_response_timeout
        outcome(flow)["timeout"] = (
            f"upstream {flow.request.host}:{flow.request.port} timed out: "
            f"no response within {timeout:g} s"
        )
        if not close_server_connection(flow):
            del outcome(flow)["timeout"]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

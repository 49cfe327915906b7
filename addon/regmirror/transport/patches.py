"""Every patch of mitmproxy's internals, in one place, checked against the version it was
written for. mitmproxy 11 has no setting or hook for these:

- error pages: `_http1.make_error_response` and `_http2.format_error` build mitmproxy's own
  answers as HTML; clients expect registry JSON (error_pages.py);
- large reads: `ConnectionHandler.handle_connection` reads 64 KiB at a time (a literal);
  the wrapper hands it a reader of `regmirror_read_size` (streaming.py: half the CPU);
- `close_server_connection`: mitmproxy cannot end a flow in transit (its issue #4711), so a
  response timeout reaches into `Proxyserver.connections` to close the upstream connection;
- hook dispatch: `AddonManager.trigger_event` costs about a quarter of the CPU of a small
  request in its own machinery; dispatch.py does the same with less (same order and
  error handling);
- `tune_malloc`: glibc's malloc thresholds, process-wide (streaming.py explains why).

The addon installs the patches in `running` and restores them in `done`. On another
mitmproxy version it warns at load; a patch whose target has gone is logged by name and
skipped, and the mirror runs without it.
"""

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from mitmproxy import ctx, http
from mitmproxy import version as mitmproxy_version
from mitmproxy.addonmanager import AddonManager
from mitmproxy.connection import Connection
from mitmproxy.proxy import server
from mitmproxy.proxy.layers.http import _http1, _http2

from . import dispatch, error_pages

logger = logging.getLogger(__name__)

WRITTEN_FOR = "11.0.2"
MITMPROXY_READ_SIZE = 65535  # what mitmproxy 11 asks its stream readers for
M_TRIM_THRESHOLD = -1  # mallopt() parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3


class LargeReads:
    """A connection's reader that hands mitmproxy up to `size` bytes per read.

    asyncio's StreamReader.read(n) returns what is buffered, up to n: it never waits for n.
    """

    def __init__(self, reader: asyncio.StreamReader, size: int) -> None:
        self.reader = reader
        self.size = size

    async def read(self, n: int = -1) -> bytes:
        return await self.reader.read(max(n, self.size) if n > 0 else n)

    def __getattr__(self, name: str) -> object:
        return getattr(self.reader, name)


def read_size() -> int:
    try:
        return int(ctx.options.regmirror_read_size)
    except AttributeError:  # the option is not loaded (unit tests of other addons)
        return 0


def large_reads(original: Callable[..., Any]) -> Callable[..., Any]:
    """`ConnectionHandler.handle_connection`, swapping the connection's reader for a
    LargeReads before mitmproxy's own code takes it, and letting its socket transport
    receive as much per system call."""

    @functools.wraps(original)
    async def handle_connection(self: server.ConnectionHandler, connection: Connection) -> None:
        size = read_size()
        io = self.transports.get(connection)
        if size > MITMPROXY_READ_SIZE and io and isinstance(io.reader, asyncio.StreamReader):
            io.reader = LargeReads(io.reader, size)  # type: ignore[assignment]
            transport = io.writer.transport if isinstance(io.writer, asyncio.StreamWriter) else None
            if transport is not None and hasattr(transport, "max_size"):
                transport.max_size = max(transport.max_size, size)
        await original(self, connection)

    return handle_connection


class Patch(NamedTuple):
    name: str
    owner: Any  # the module or class whose attribute is replaced
    attribute: str
    replacement: Callable[[Callable[..., Any]], Callable[..., Any]]  # original -> new


PATCHES = (
    Patch("error pages (HTTP/1)", _http1, "make_error_response",
          lambda _: error_pages.http1_error_response),
    Patch("error pages (HTTP/2)", _http2, "format_error", lambda _: error_pages.http2_error_body),
    Patch("large reads", server.ConnectionHandler, "handle_connection", large_reads),
    Patch("hook dispatch", AddonManager, "trigger_event", lambda _: dispatch.trigger_event),
)  # fmt: skip


def close_server_connection(flow: http.HTTPFlow) -> bool:
    """Close the upstream connection of a flow in transit; False when it is not open."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
    if handler is None or flow.server_conn not in handler.transports:
        return False
    handler.close_connection(flow.server_conn)
    return True


def tune_malloc(size: int) -> bool:
    """Serve allocations up to 2x `size` from the heap and trim it only when 8x `size` is
    free at its top, so that buffers of `size` are reused rather than returned to the kernel
    after each read. False where that is not possible (no glibc, size too large). There is
    no way to read the old thresholds back, so this is not undone in `done`."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 2 * size)) and bool(mallopt(M_TRIM_THRESHOLD, 8 * size))


class Patches:
    def __init__(self) -> None:
        self.installed: list[tuple[Patch, Any]] = []  # with the original each replaced

    def load(self, loader) -> None:
        if mitmproxy_version.VERSION != WRITTEN_FOR:
            logger.warning(
                "regmirror patches mitmproxy %s internals; this is mitmproxy %s: check "
                "regmirror/transport/patches.py", WRITTEN_FOR, mitmproxy_version.VERSION,
            )  # fmt: skip

    def running(self) -> None:
        self.install()

    def done(self) -> None:
        self.restore()

    def install(self) -> None:
        for patch in PATCHES:
            if any(p is patch for p, _ in self.installed):
                continue
            original = getattr(patch.owner, patch.attribute, None)
            if not callable(original):
                logger.error("regmirror: mitmproxy changed, patch %r not installed: %s.%s is "
                             "gone", patch.name, patch.owner.__name__, patch.attribute)  # fmt: skip
                continue
            setattr(patch.owner, patch.attribute, patch.replacement(original))
            self.installed.append((patch, original))

    def restore(self) -> None:
        while self.installed:
            patch, original = self.installed.pop()
            setattr(patch.owner, patch.attribute, original)

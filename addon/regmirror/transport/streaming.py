"""Stream blob bodies straight through: never held in memory, no per-chunk work.

mitmproxy reads every connection 64 KiB at a time and runs its whole protocol stack once per
read, so a blob costs about 16,000 passes through Python per GiB. Reading up to
`regmirror_read_size` bytes at a time instead (512 KiB) halves the CPU per byte and nearly
doubles blob throughput (see BENCHMARKS.md); memory stays flat, since a read never waits to
fill up. 1 MiB gains another 10 % of CPU but costs about 1 MB of RSS per busy connection.

Each read allocates and frees a few buffers of that size. glibc's malloc adapts its thresholds
to such sizes as it goes, and can end up giving the memory back to the kernel after every
read and faulting it in again: about 750,000 page faults and twice the CPU per GiB. Fixed
thresholds just above the read size keep those buffers in the heap.
"""

import asyncio
import ctypes
import ctypes.util
import functools
import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.connection import Connection
from mitmproxy.proxy import server

from ..flowinfo import REDIRECT, info
from ..routing import names

logger = logging.getLogger(__name__)

STREAMED_OPS = (names.BLOB, REDIRECT)
DEFAULT_READ_SIZE = 512 << 10
MITMPROXY_READ_SIZE = 65535  # what mitmproxy 11 asks its stream readers for
MAX_READ_SIZE = 16 << 20


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


def install_large_reads() -> None:
    """Give each connection mitmproxy handles a LargeReads reader, and let its socket
    transport receive as much per system call. mitmproxy 11 has no setting for its read size
    (a literal in ConnectionHandler.handle_connection), so that method is wrapped: the wrapper
    swaps the reader before mitmproxy's own code takes it."""
    original = server.ConnectionHandler.handle_connection
    if getattr(original, "regmirror_large_reads", False):
        return

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

    handle_connection.regmirror_large_reads = True  # type: ignore[attr-defined]
    server.ConnectionHandler.handle_connection = handle_connection  # type: ignore[method-assign]


M_TRIM_THRESHOLD = -1  # mallopt() parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3


def tune_malloc(size: int) -> bool:
    """Serve allocations up to 2x `size` from the heap and trim it only when 8x `size` is
    free at its top, so that buffers of `size` are reused rather than returned to the kernel
    after each read. False where that is not possible (no glibc, size too large)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 2 * size)) and bool(mallopt(M_TRIM_THRESHOLD, 8 * size))


def read_size() -> int:
    try:
        return int(ctx.options.regmirror_read_size)
    except AttributeError:  # the option is not loaded (unit tests of other addons)
        return 0


class Streaming:
    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_read_size",
            int,
            DEFAULT_READ_SIZE,
            """
            Bytes read from a client or upstream connection at a time. mitmproxy reads 64 KiB;
            larger reads move blobs with far less CPU (512 KiB: half the CPU per byte), at the
            cost of up to about twice this size of memory per connection that moves a blob.
            Above 64 KiB, glibc's malloc is also told to keep buffers of this size in the heap.
            0 keeps mitmproxy's own size. Applies to connections opened after a change.
            """,
        )
        install_large_reads()

    def configure(self, updated: set[str]) -> None:
        if "regmirror_read_size" not in updated:
            return
        size = ctx.options.regmirror_read_size
        if not 0 <= size <= MAX_READ_SIZE:
            raise exceptions.OptionsError("regmirror_read_size must be 0 to 16 MiB")
        if size > MITMPROXY_READ_SIZE and not tune_malloc(size):
            logger.debug("regmirror: malloc thresholds left as they are")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if (
            not resp
            or not i
            or i.get("op") not in STREAMED_OPS
            or not 200 <= resp.status_code < 300
        ):
            return
        # Any other large body is streamed by stream_large_bodies (see upstream.py).
        resp.stream = True

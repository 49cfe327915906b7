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

Both are patches of mitmproxy's internals, and live in patches.py.
"""

import logging

from mitmproxy import ctx, exceptions, http

from ..record import REDIRECT, route
from ..routing import names
from .patches import MITMPROXY_READ_SIZE, tune_malloc

logger = logging.getLogger(__name__)

DEFAULT_READ_SIZE = 512 << 10
MAX_READ_SIZE = 16 << 20


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

    def configure(self, updated: set[str]) -> None:
        if "regmirror_read_size" not in updated:
            return
        size = ctx.options.regmirror_read_size
        if not 0 <= size <= MAX_READ_SIZE:
            raise exceptions.OptionsError("regmirror_read_size must be 0 to 16 MiB")
        if size > MITMPROXY_READ_SIZE and not tune_malloc(size):
            logger.debug("regmirror: malloc thresholds left as they are")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        resp = flow.response
        if not resp or not r or not 200 <= resp.status_code < 300:
            return
        if r.get("op") != names.BLOB and r.get("via") != REDIRECT:
            return
        # Any other large body is streamed by stream_large_bodies (see upstream.py).
        resp.stream = True

"""The data plane's listener: cached blobs sent to clients with sendfile, on the mirror's own
event loop, past mitmproxy (which would copy every byte through Python).

It answers only signed blob URLs (blob_urls.py) that the API port handed out in a 307:
- a forged, altered (another digest) or expired URL: 403 DENIED; anything else 404 or 405;
- a blob no longer in the cache (evicted since), or whose file fails its integrity check
  (integrity.py, via Lookup.intact, which drops it): 404 BLOB_UNKNOWN;
- otherwise the file, as the loopback file server answers it (files.py: Range, HEAD,
  conditional requests), marked as being read so that eviction leaves it alone.
It never contacts an upstream. One log line per transfer in the mirror's words
(`pull blob docker.io/library/x@sha256:… via data plane -> 200 cache hit 27.1 MB 9 ms`, with
`via data plane (TLS)` over TLS), and
the mirror's request and served-bytes metrics with the blob's route (source="cache").

Plain HTTP and TLS share the port, told apart by the first byte like mitmproxy's own port:
a TLS handshake record starts with 0x16, which no HTTP request does. TLS is answered when
`tls(local address)` gives a context (blob_tls.py), else the connection is closed. Over TLS
the file is read and encrypted in user space: not zero-copy.
"""

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .. import errors
from ..observe.describe import Operation, human_size, operation, printable, words
from ..observe.metrics import Metrics
from ..record import Route
from ..routing import names
from ..transport.patches import MITMPROXY_READ_SIZE, read_size
from . import blob_urls
from .blob_limits import ClientConnections, Counted
from .blob_urls import Blob
from .content import CachedFile
from .files import content_headers
from .lookup import Lookup
from .store import Store

logger = logging.getLogger(__name__)

FIRST_BYTE_TIMEOUT = 30  # seconds a new connection may stay silent
HANDSHAKE_TIMEOUT = 10
SHUTDOWN_TIMEOUT = 1  # seconds transfers in flight get when the mirror stops
TLS_RECORD = 0x16
WHERE = "via data plane"
TLS_CHUNK = 1 << 20  # at most this many bytes read (in a thread) and encrypted at a time
MALLOC_MARGIN = 64 << 10  # below the mmap threshold: the bytes object's header, and then some


def tls_chunk(read_size: int) -> int:
    """Bytes read and encrypted at a time over TLS: TLS_CHUNK, but less than the mmap
    threshold that streaming.py sets when reads are large (2x regmirror_read_size: 1 MiB by
    default). A chunk over it is mapped and unmapped by malloc every time: 1 MiB chunks cost
    1.85 s of CPU per GiB here (page faults, munmap), 960 KiB ones 1.07 s (and 1.5x the
    throughput)."""
    if read_size <= MITMPROXY_READ_SIZE:  # malloc's own thresholds, which adapt
        return TLS_CHUNK
    return min(TLS_CHUNK, 2 * read_size - MALLOC_MARGIN)


class TlsFile(CachedFile):
    """A cached file sent over TLS in large chunks (tls_chunk). asyncio's fallback for
    sendfile on a TLS transport, which aiohttp would get, reads 16 KiB per round trip to a
    thread: 268 MB took 2-3 s here, slower than through mitmproxy. aiohttp's own fallback
    (`_sendfile_fallback`, what it uses without sendfile) reads `chunk_size` bytes per round
    trip instead."""

    def __init__(self, store: Store, digest: str, headers: dict[str, str]) -> None:
        super().__init__(store, digest, headers, tls_chunk(read_size()))

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        writer = await web.StreamResponse.prepare(self, request)  # the head, as aiohttp does
        assert writer is not None
        return await self._sendfile_fallback(writer, fobj, offset, count)


def transfer_words(method: str, blob: Blob | None, path: str, tls: bool) -> str:
    """What a data-plane request asked for, as the API port's log names it, `via data plane`
    (`(TLS)`: not zero-copy); without a (verified) blob, only its path, never its query (the
    signature)."""
    where = f"{WHERE} (TLS)" if tls else WHERE
    if blob is None:
        return words(Operation("request", "", "", f"{method} {path[:120]} {where}"))
    r = Route(op=names.BLOB, registry=blob.registry, name=blob.name, reference=blob.digest)
    return words(operation(method, r, [], path)._replace(detail=where))


def transfer_ending(method: str, status: int, code: str, reason: str, body: int) -> str:
    """How it ended: `-> 200 cache hit 27.1 MB`, `-> 206 cache hit 1.0 MB`,
    `-> 403 DENIED (blob URL expired)`."""
    parts = ["->", str(status)]
    if code:
        parts.append(f"{code} ({reason})" if reason else code)
    if 200 <= status < 300:
        parts.append("cache hit")
        if method != "HEAD":
            parts.append(human_size(body))
    return printable(" ".join(parts))


def local_name(sock: socket.socket) -> str:
    """The address a client connected to, as a certificate names it (an IPv4 client of a
    dual-stack socket by its IPv4 address)."""
    address = sock.getsockname()[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


async def _peek(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The first byte a client sends, left in the socket for whoever reads it next."""
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
    return sock.recv(1, socket.MSG_PEEK)


class BlobServer:
    def __init__(
        self,
        sock: socket.socket,
        key: Callable[[], bytes],
        lookup: Callable[[], Lookup | None],
        metrics: Metrics,
        tls: Callable[[str], ssl.SSLContext | None],
        per_client: Callable[[], int] = lambda: 0,
    ) -> None:
        """`per_client()`: the connections one address may have open (0: no limit)."""
        self.sock, self.key, self.lookup, self.metrics, self.tls = sock, key, lookup, metrics, tls
        self.clients = ClientConnections(per_client)
        self.port: int = sock.getsockname()[1]
        self._runner: web.AppRunner | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(blob_urls.PATH + "{digest}", self._blob)  # HEAD included
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def stop(self) -> None:
        if self._accepting:
            self._accepting.cancel()
        for task in list(self._connecting):
            task.cancel()
        self.sock.close()
        if self._runner:
            await self._runner.cleanup()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as e:  # out of file descriptors: the backlog waits meanwhile
                logger.warning("regmirror: data plane cannot accept: %s", e)
                await asyncio.sleep(0.1)
                continue
            release = self.clients.admit(peer[0])
            if release is None:
                logger.debug("regmirror: data plane: %s has too many connections", peer[0])
                conn.close()
                continue
            task = loop.create_task(self._connection(conn, release))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connection(self, conn: socket.socket, release: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        assert self._runner and self._runner.server
        server = self._runner.server
        try:
            first = await asyncio.wait_for(_peek(loop, conn), FIRST_BYTE_TIMEOUT)
            context = None
            if first and first[0] == TLS_RECORD:
                context = self.tls(local_name(conn))
                if context is None:
                    raise ConnectionRefusedError("TLS is not served")
            if not first:
                raise ConnectionAbortedError("closed before a request")
            timeout = HANDSHAKE_TIMEOUT if context else None  # asyncio: for TLS only
            await loop.connect_accepted_socket(
                lambda: Counted(server(), release), conn, ssl=context,
                ssl_handshake_timeout=timeout,
            )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError, ValueError) as e:
            logger.debug("regmirror: data plane connection closed: %s", e)
            release()
            conn.close()
        except BaseException:  # the mirror stops (cancelled), or a bug
            release()
            conn.close()
            raise

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        try:
            blob = blob_urls.verify(
                request.match_info["digest"],
                request.rel_url.raw_query_string,
                self.key(),
                time.time(),
            )
        except ValueError as e:
            return self._refuse(request, None, 403, errors.DENIED, str(e), start)
        lookup = self.lookup()
        if not lookup or not await lookup.intact(blob.digest, blob.size):  # evicted, or damaged
            return self._refuse(request, blob, 404, errors.BLOB_UNKNOWN, "not cached", start)
        headers = content_headers(blob.digest, blob.media_type)
        response = (TlsFile if request.secure else CachedFile)(lookup.store, blob.digest, headers)
        try:
            await response.prepare(request)
        except OSError as e:  # the client went away mid-transfer
            said = transfer_words(request.method, blob, request.path, request.secure)
            logger.warning(printable(f"{said} -> failed: {e}"))
            self.metrics.requests.labels(blob.upstream, "blob", "error").inc()
            if request.transport:
                request.transport.abort()
            return response
        body = response.content_length or 0
        body = body if request.method != "HEAD" and response.status in (200, 206) else 0
        self._done(request, blob, response.status, "", body, start)
        return response

    async def _other(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        if request.method not in ("GET", "HEAD"):
            return self._refuse(request, None, 405, errors.UNSUPPORTED, "GET or HEAD only", start)
        return self._refuse(request, None, 404, errors.UNSUPPORTED, "unknown endpoint", start)

    def _refuse(
        self,
        request: web.Request,
        blob: Blob | None,
        status: int,
        code: str,
        message: str,
        start: float,
    ) -> web.Response:
        response = web.Response(  # aiohttp sends no body for HEAD, with its length
            status=status,
            body=errors.error_body(code, message),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Docker-Distribution-Api-Version": "registry/2.0",
            },
        )
        self._done(request, blob, status, code, 0, start, message)
        return response

    def _done(
        self,
        request: web.Request,
        blob: Blob | None,
        status: int,
        code: str,
        body: int,
        start: float,
        reason: str = "",
    ) -> None:
        ms = (time.monotonic() - start) * 1000
        said = transfer_words(request.method, blob, request.path, request.secure)
        ended = transfer_ending(request.method, status, code, reason, body)
        logger.info(f"{said} {ended} {ms:.0f} ms")
        route = blob.upstream if blob else ""
        self.metrics.requests.labels(route, "blob", str(status)).inc()
        if body:
            self.metrics.served.labels(route, "blob", "cache").inc(body)

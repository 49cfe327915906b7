"""The blob data plane, wired into the mirror: a cache hit for a large blob is sent to a second
listener of this process (blob_server.py) that sends the file with sendfile, instead of
through mitmproxy, which copies every byte in Python.

- requestheaders (after the cache's): a blob GET that the cache answers from a committed
  file (a hit, decided as always: after client auth, allow/deny and the cache's rules on
  repositories and provenance), of at least regmirror_blob_redirect_min bytes, gets a 307 to
  a signed data-plane URL (blob_urls.py). Smaller blobs, HEADs, manifests and blobs still
  being filled (single flight) are served through mitmproxy as before.
- With an s3:// cache there is no file to send: its hits stay on the API port, or with
  regmirror_s3_redirect get a 307 to a presigned GET of their object.
- regmirror_blob_listen is bound in `configure`, so a port that cannot be had stops the
  start (or rolls back the option) with a message that names it; served from `running`.
"""

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from mitmproxy import ctx, exceptions, http

from ..answers import answer
from ..observe.metrics import Metrics
from ..record import route
from ..routing import names
from ..transport.signing import Signer
from . import blob_limits, blob_urls, decisions
from .addon import Cache
from .blob_server import BlobServer
from .blob_tls import Certificates
from .blob_urls import Blob
from .s3.client import S3_ERRORS
from .s3.content import S3Content

logger = logging.getLogger(__name__)

BACKLOG = 512
BY = "data plane"
BY_S3 = "S3 redirect"
PRESIGNED_SECONDS = 300  # as distribution's redirect middleware: long enough for a slow pull
T = TypeVar("T")


def load_options(loader) -> None:
    loader.add_option(
        "regmirror_blob_listen",
        str,
        "",
        """
        [host:]port of the blob data plane: a second listener that sends cached blobs
        with sendfile, past mitmproxy. A blob GET answered from the cache gets a 307 to
        it (a URL signed with regmirror_redirect_secret, for that digest and repository,
        valid 60 s). Plain HTTP, and TLS with the certificates of the mirror's own port
        unless regmirror_tls is false (TLS is not zero-copy). Empty: off, every blob is
        served on the mirror's port.
        """,
    )
    loader.add_option(
        "regmirror_blob_url",
        str,
        "",
        """
        Base URL (scheme://host[:port]) by which clients reach the data plane, behind a
        load balancer or NAT. Empty: the scheme and host the client used for the mirror,
        with the data plane's port.
        """,
    )
    loader.add_option(
        blob_limits.OPTION,
        int,
        blob_limits.DEFAULT_LIMIT,
        """
        Connections one IP address may have open on the data plane at once; 0: no limit.
        A connection over it is closed at once, and the client retries or fails. Behind
        a load balancer or a NAT all its clients share one address: raise it, or set 0.
        """,
    )
    loader.add_option(
        "regmirror_blob_redirect_min",
        str,
        "1m",
        """
        Smallest cached blob sent to the data plane (or, with regmirror_s3_redirect, to
        its S3 object): bytes, or a number with a k, m, g or t suffix (powers of 1024).
        Smaller ones cost more in the extra round trip than they save.
        """,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host` (every interface, IPv6 and IPv4, when empty)."""
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    if socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", port), family=socket.AF_INET6, backlog=BACKLOG, dualstack_ipv6=True
        )
    return socket.create_server(("", port), backlog=BACKLOG)


def _parsed(option: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(getattr(ctx.options, option))
    except ValueError as e:
        raise exceptions.OptionsError(f"{option}: {e}") from e


class DataPlane:
    def __init__(self, cache: Cache, signer: Signer, metrics: Metrics) -> None:
        self.cache, self.signer, self.metrics = cache, signer, metrics
        self.min_size = 1 << 20
        self.base = ""
        self.server: BlobServer | None = None
        self.certificates = Certificates(lambda: ctx.master.addons.get("tlsconfig").certstore)
        self._listening: socket.socket | None = None  # bound, not yet served
        self._running = False
        self._switch: asyncio.Task[None] | None = None
        self._serving = asyncio.Lock()  # one switch of sockets at a time

    def load(self, loader) -> None:
        load_options(loader)

    def configure(self, updated: set[str]) -> None:
        if blob_limits.OPTION in updated and getattr(ctx.options, blob_limits.OPTION) < 0:
            raise exceptions.OptionsError(f"{blob_limits.OPTION} must be 0 (no limit) or more")
        if "regmirror_blob_redirect_min" in updated:
            self.min_size = _parsed("regmirror_blob_redirect_min", decisions.parse_size)
        if "regmirror_blob_url" in updated:
            self.base = _parsed("regmirror_blob_url", blob_urls.parse_base_url)
        if "regmirror_blob_listen" in updated:
            spec = ctx.options.regmirror_blob_listen
            try:
                address = blob_urls.parse_listen(spec)
                sock = bind(*address) if address else None
            except (ValueError, OSError) as e:
                raise exceptions.OptionsError(f"regmirror_blob_listen={spec}: {e}") from e
            if self._listening:  # bound by a change not served yet
                self._listening.close()
            self._listening = sock
            if self._running:  # changed at run time: serve the new socket instead
                self._switch = asyncio.get_running_loop().create_task(self._serve())

    async def running(self) -> None:
        self._running = True
        await self._serve()

    async def done(self) -> None:
        self._running = False
        if self._switch:
            await self._switch
        await self._serve()

    async def _serve(self) -> None:
        """Stop the server, and serve the socket bound last, if any."""
        async with self._serving:
            old, self.server = self.server, None
            if old:
                await old.stop()
            sock, self._listening = self._listening, None
            if sock is None:
                return
            if not self._running:
                return sock.close()
            server = BlobServer(sock, lambda: self.signer.key, self.cache.lookup,
                                self.metrics, self._tls, self._per_client)  # fmt: skip
            await server.start()
            self.server = server
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        logger.info("regmirror: blob data plane listening on %s:%d", shown, port)

    def _per_client(self) -> int:
        return int(getattr(ctx.options, blob_limits.OPTION))

    def _tls(self, name: str) -> ssl.SSLContext | None:
        if not ctx.options.regmirror_tls or ctx.master.addons.get("tlsconfig") is None:
            return None
        return self.certificates.context(name)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        link = self.cache.hits.get(flow)  # the cache serves this from committed content
        r = route(flow)
        if flow.response or flow.error or not link or not r:
            return
        if r.get("op") != names.BLOB or flow.request.method != "GET" or link.size < self.min_size:
            return
        content = self.cache.content
        if isinstance(content, S3Content):  # sendfile needs a file: a bucket's hit stays here
            if ctx.options.regmirror_s3_redirect:  # or goes to the storage itself
                try:
                    location = await content.presign(link.digest, PRESIGNED_SECONDS)
                except S3_ERRORS as e:  # no credentials to sign with: streamed instead
                    return logger.warning("regmirror: no presigned URL for %s: %s",
                                          link.digest, e)  # fmt: skip
                headers = {"Location": location, "Docker-Distribution-Api-Version": "registry/2.0"}
                answer(flow, http.Response.make(307, b"", headers), BY_S3)
            return
        if not self.server:
            return
        blob = Blob(link.digest, r["registry"], r["name"], r["upstream"], link.media_type,
                    link.size)  # fmt: skip
        base = self.base or blob_urls.default_base(r["mirror"], self.server.port)
        location = base + blob_urls.sign(blob, self.signer.key, time.time())
        headers = {"Location": location, "Docker-Distribution-Api-Version": "registry/2.0"}
        answer(flow, http.Response.make(307, b"", headers), BY)

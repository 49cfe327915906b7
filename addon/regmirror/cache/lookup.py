"""Where the cache holds what a request asks for: the committed file of a digest linked to the
repository, or (single flight) a fill in progress for the same repository; and what it
knows of a tag. Only as verified (integrity.py); who may read it is the caller's decision."""

import asyncio
import logging
import sqlite3

from mitmproxy import http

from ..record import Route
from . import decisions
from .files import FileServer
from .index import Index, Link, Tag
from .integrity import Verified
from .metrics import CacheMetrics
from .store import Store

logger = logging.getLogger(__name__)

PASSED_HEADERS = (b"range", b"if-range", b"if-none-match", b"if-modified-since", b"accept")
# A fill in progress: (registry, repository, provenance, media type).
Filling = tuple[str, str, str, str]


def to_files(req: http.Request, url: str) -> None:
    """Send a request to the cache's file server, with only what it answers by: no
    credentials, nothing else."""
    kept = [(k, v) for k, v in req.headers.fields if k.lower() in PASSED_HEADERS]
    req.headers = http.Headers(kept)
    req.url = url
    req.host_header = req.host


class Lookup:
    def __init__(
        self,
        store: Store,
        index: Index,
        files: FileServer,
        verified: Verified,
        metrics: CacheMetrics,
    ) -> None:
        self.store, self.index, self.files = store, index, files
        self.verified, self.metrics = verified, metrics

    def following(self, r: Route, digest: str, filling: Filling | None) -> str:
        """The URL of a blob being filled for the same repository from a request anyone may
        read, sent to this client as the file grows; "" otherwise."""
        if not filling or not self.store.filling(digest):
            return ""
        registry, name, provenance, media_type = filling
        same = (registry, name) == (r["registry"], r["name"])
        if not same or not decisions.may_read(provenance, client_checked=False):
            return ""
        return self.files.follow_url(digest, media_type)

    def linked(self, r: Route, digest: str) -> Link | None:
        """The link of `digest` to the repository asked for, if the cache holds it."""
        try:
            return self.index.linked(r["registry"], r["name"], digest)
        except sqlite3.Error as e:  # locked past its timeout, or damaged: go upstream
            self.fault("index", f"cache index unusable, answering from upstream: {e}")
            return None

    def tag(self, r: Route) -> Tag | None:
        """What the cache knows of the tag asked for."""
        try:
            return self.index.tag(r["registry"], r["name"], r["reference"])
        except sqlite3.Error as e:
            self.fault("index", f"cache index unusable, answering from upstream: {e}")
            return None

    async def file_url(self, link: Link) -> str:
        """The URL of the committed file, when it is intact; "" otherwise."""
        if not await self.intact(link.digest, link.size):
            return ""
        return self.files.url(link.digest, link.media_type)

    async def intact(self, digest: str, size: int) -> bool:
        """The file is there and verified; a corrupted one is dropped."""
        path = self.store.path(digest)
        if await self.verified.check(digest, path, size):
            return True
        if self.store.has(digest):
            self.fault("file", f"cache file {digest} is corrupted on disk: dropped")
            self.verified.forget(digest)
            self.store.remove(digest)
        try:
            await asyncio.to_thread(self.index.remove, [digest])
        except sqlite3.Error as e:
            self.fault("index", f"cache index unusable: {e}")
        return False

    def fault(self, kind: str, message: str) -> None:
        logger.warning("regmirror: %s", message)
        self.metrics.faults.labels(kind).inc()

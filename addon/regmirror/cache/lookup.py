"""Where the cache holds what a request asks for: the committed file of a digest linked to the
repository, or (single flight) a fill in progress for the same repository; and what it
knows of a tag. Only as verified (integrity.py); who may read it is the caller's decision."""

import logging

from mitmproxy import http

from ..record import Route
from . import decisions
from .catalog import Catalog
from .content import CORRUPTED, OK, UNKNOWN, Content
from .errors import CatalogError
from .files import FileServer
from .index import Link, Tag
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
        catalog: Catalog,
        content: Content,
        files: FileServer,
        metrics: CacheMetrics,
    ) -> None:
        self.store, self.catalog, self.content = store, catalog, content
        self.files, self.metrics = files, metrics

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

    async def linked(self, r: Route, digest: str) -> Link | None:
        """The link of `digest` to the repository asked for, if the cache holds it."""
        try:
            return await self.catalog.linked(r["registry"], r["name"], digest)
        except CatalogError as e:
            self.fault("index", f"{e}; answering from upstream")
            return None

    async def tag(self, r: Route) -> Tag | None:
        """What the cache knows of the tag asked for."""
        try:
            return await self.catalog.tag(r["registry"], r["name"], r["reference"])
        except CatalogError as e:
            self.fault("index", f"{e}; answering from upstream")
            return None

    async def file_url(self, link: Link) -> str:
        """The URL of the committed content, when it is intact; "" otherwise."""
        if not await self.intact(link.digest, link.size):
            return ""
        return self.files.url(link.digest, link.media_type)

    async def intact(self, digest: str, size: int) -> bool:
        """The content is there and verified; a corrupted one is dropped, and forgotten."""
        state = await self.content.check(digest, size)
        if state == OK:
            return True
        if state == UNKNOWN:
            self.fault("file", f"cache content {digest} cannot be checked just now: a miss")
            return False
        if state == CORRUPTED:
            self.fault("file", f"cache file {digest} is corrupted {self.content.where}: dropped")
        try:
            await self.catalog.forget([digest])
        except CatalogError as e:
            self.fault("index", str(e))
        return False

    def fault(self, kind: str, message: str) -> None:
        logger.warning("regmirror: %s", message)
        self.metrics.faults.labels(kind).inc()

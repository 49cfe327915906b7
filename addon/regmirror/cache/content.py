"""Committed content by digest, behind one interface whatever holds it: whether it may be
served (there, of its size, and verified), dropping it, and answering a request for it on
the cache's loopback file server (files.py). `LocalContent` is the files of a cache
directory; `s3.content.S3Content` the objects of a bucket."""

from typing import Protocol

from aiohttp import web

from .fill import Fill
from .integrity import Verified
from .store import Store

OK, MISSING, CORRUPTED = "ok", "missing", "corrupted"
UNKNOWN = "unknown"  # the store cannot be asked just now: a miss, and nothing forgotten


class Content(Protocol):
    where: str  # for messages: "on disk", "in the bucket"

    async def check(self, digest: str, size: int) -> str:
        """OK when `digest` may be served as `size` bytes; MISSING, CORRUPTED (then it
        has been dropped), or UNKNOWN."""
        ...

    async def discard(self, digest: str) -> None: ...

    def committed(self, fill: Fill) -> None:
        """`fill` was just committed, verified."""
        ...

    async def respond(
        self, request: web.Request, digest: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        """The answer to a GET or HEAD (Range included) of committed content; raises
        web.HTTPNotFound when it is not held."""
        ...


class LocalContent:
    """Files, re-hashed before they are served when they changed on disk (integrity.py)."""

    where = "on disk"

    def __init__(self, store: Store, verified: Verified) -> None:
        self.store, self.verified = store, verified

    async def check(self, digest: str, size: int) -> str:
        if await self.verified.check(digest, self.store.path(digest), size):
            return OK
        self.verified.forget(digest)
        if not self.store.has(digest):
            return MISSING
        self.store.remove(digest)
        return CORRUPTED

    async def discard(self, digest: str) -> None:
        self.verified.forget(digest)
        self.store.remove(digest)

    def committed(self, fill: Fill) -> None:
        self.verified.mark(fill.digest, fill.final_path)

    async def respond(
        self, request: web.Request, digest: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        if not self.store.has(digest):
            raise web.HTTPNotFound()
        return CachedFile(self.store, digest, headers)


class CachedFile(web.FileResponse):
    """A cached file, marked as being read while aiohttp sends it, so that eviction leaves
    it alone."""

    def __init__(
        self, store: Store, digest: str, headers: dict[str, str], chunk_size: int = 256 << 10
    ) -> None:
        super().__init__(store.path(digest), chunk_size, headers=headers)
        self._store, self._digest = store, digest

    # aiohttp sets its own entity tag (mtime and size) as it prepares: keep the digest
    etag = property(
        web.FileResponse.etag.fget,
        lambda self, _: web.FileResponse.etag.fset(self, self._digest),  # type: ignore[attr-defined]
    )

    async def prepare(self, request: web.BaseRequest):  # type: ignore[override]
        if self.prepared:  # sent by its handler already (the data plane's, to log the end)
            return None
        with self._store.reading(self._digest):
            return await super().prepare(request)

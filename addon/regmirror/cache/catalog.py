"""What the cache knows of its content, behind one asynchronous interface whatever holds
it: which repositories may see a digest and how it was fetched (links), what tags point at,
and the content's size, type and last access. `LocalCatalog` keeps it in the SQLite index
of a cache directory (index.py); `s3.catalog.S3Catalog` in objects of the shared bucket.

Every method raises CatalogError when its catalog cannot answer; callers then answer from
upstream, as if the cache held nothing."""

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, TypeVar

from .errors import CatalogError
from .index import Entry, Index, Link, Tag

T = TypeVar("T")


class Committed(NamedTuple):
    """Content just committed, and where it was fetched: its link and (for a manifest
    asked for by tag, or a tag pending for it) the tag and when it was validated."""

    digest: str
    size: int
    media_type: str
    kind: str
    now: float
    registry: str
    repository: str
    provenance: str
    tag: tuple[str, float] | None


class Catalog(Protocol):
    async def linked(self, registry: str, repository: str, digest: str) -> Link | None: ...

    async def tag(self, registry: str, repository: str, tag: str) -> Tag | None: ...

    async def set_tag(
        self, registry: str, repository: str, tag: str, digest: str, media_type: str,
        validated: float,
    ) -> None: ...  # fmt: skip

    async def drop_tag(self, registry: str, repository: str, tag: str) -> None: ...

    async def record(self, committed: Committed) -> bool:
        """Add the content, its link and tag; True if the digest was not held before."""
        ...

    async def forget(self, digests: Iterable[str]) -> None:
        """The content is gone (evicted, or found bad): forget it and what points at it."""
        ...

    async def touch(self, accesses: list[tuple[str, float, int]]) -> None:
        """Apply a batch of (digest, last access, hits)."""
        ...

    async def totals(self) -> tuple[int, int]:
        """(bytes, entries) held."""
        ...

    async def entries(self) -> list[Entry]:
        """All content, for eviction."""
        ...

    def close(self) -> None: ...


class LocalCatalog:
    """The SQLite index: primary-key lookups on the event loop (WAL: they never wait for a
    writer), everything that writes or walks the table in a thread."""

    def __init__(self, index: Index) -> None:
        self.index = index

    async def linked(self, registry: str, repository: str, digest: str) -> Link | None:
        return _checked(self.index.linked, registry, repository, digest)

    async def tag(self, registry: str, repository: str, tag: str) -> Tag | None:
        return _checked(self.index.tag, registry, repository, tag)

    async def set_tag(
        self, registry: str, repository: str, tag: str, digest: str, media_type: str,
        validated: float,
    ) -> None:  # fmt: skip
        await _threaded(self.index.set_tag, registry, repository, tag, digest, media_type,
                        validated)  # fmt: skip

    async def drop_tag(self, registry: str, repository: str, tag: str) -> None:
        await _threaded(self.index.drop_tag, registry, repository, tag)

    async def record(self, committed: Committed) -> bool:
        return await _threaded(self._record, committed)

    def _record(self, c: Committed) -> bool:
        index = self.index
        with index.writing():
            new = index.size(c.digest) is None
            index.add(c.digest, c.size, c.media_type, c.kind, c.now)
            index.link(c.registry, c.repository, c.digest, c.provenance)
            if c.tag:
                index.set_tag(c.registry, c.repository, c.tag[0], c.digest, c.media_type,
                              c.tag[1])  # fmt: skip
        return new

    async def forget(self, digests: Iterable[str]) -> None:
        await _threaded(self.index.remove, list(digests))

    async def touch(self, accesses: list[tuple[str, float, int]]) -> None:
        await _threaded(self.index.touch_many, accesses)

    async def totals(self) -> tuple[int, int]:
        return await _threaded(lambda: (self.index.total_size(), self.index.count()))

    async def entries(self) -> list[Entry]:
        return await _threaded(self.index.entries)

    def close(self) -> None:
        self.index.close()


def _checked(method: Callable[..., T], *args: object) -> T:
    try:
        return method(*args)
    except sqlite3.Error as e:  # locked past its timeout, or damaged
        raise CatalogError(f"cache index unusable: {e}") from e


async def _threaded(method: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(_checked, method, *args)

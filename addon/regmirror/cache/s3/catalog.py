"""The catalog of an S3 cache, in small objects of the bucket (location.py), so every
replica sees what any one recorded, with no other service:

- a link is `{"provenance": ..., "size": ..., "media_type": ..., "kind": ...}`; recording
  it again keeps the most public provenance, as the SQLite index does (two replicas
  racing can only leave the less public one: a client check too many, never a widening);
- a tag is `{"digest", "media_type", "validated"}`;
- the size and entries are the bucket's listing of blobs/, and a blob's last access the
  latest of its upload and the batches of access times replicas write (never one write
  per hit), which the evicting replica merges (occupancy.py).
A tag or link whose content went is only a miss: the lookup's HEAD finds nothing."""

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..catalog import Committed
from ..errors import CatalogError
from ..index import PROVENANCES, Entry, Link, Tag
from .client import S3_ERRORS, missing
from .location import S3Location


class S3Catalog:
    def __init__(self, client: Any, location: S3Location, replica: str) -> None:
        self.client, self.location, self.replica = client, location, replica

    async def linked(self, registry: str, repository: str, digest: str) -> Link | None:
        key = self.location.link(registry, repository, digest)
        said = await self._get(key)
        if said is None:
            return None
        with _written(key):
            return Link(registry, repository, digest, said["provenance"], said["size"],
                        said["media_type"], said["kind"])  # fmt: skip

    async def tag(self, registry: str, repository: str, tag: str) -> Tag | None:
        key = self.location.tag(registry, repository, tag)
        said = await self._get(key)
        if said is None:
            return None
        with _written(key):
            return Tag(registry, repository, tag, said["digest"], said["media_type"],
                       said["validated"])  # fmt: skip

    async def set_tag(
        self, registry: str, repository: str, tag: str, digest: str, media_type: str,
        validated: float,
    ) -> None:  # fmt: skip
        said = {"digest": digest, "media_type": media_type, "validated": validated}
        await self._put(self.location.tag(registry, repository, tag), said)

    async def drop_tag(self, registry: str, repository: str, tag: str) -> None:
        await self._call("delete_object", Key=self.location.tag(registry, repository, tag))

    async def record(self, c: Committed) -> bool:
        """True when this repository's link is new: whether the content was in the bucket
        before, a bucket cannot tell cheaply. It only feeds a replica's estimate of the
        size (occupancy.py), which every listing corrects."""
        key = self.location.link(c.registry, c.repository, c.digest)
        before = await self._get(key)
        provenance = c.provenance
        if before and PROVENANCES.index(before["provenance"]) > PROVENANCES.index(provenance):
            provenance = before["provenance"]
        link = {"provenance": provenance, "size": c.size, "media_type": c.media_type,
                "kind": c.kind}  # fmt: skip
        if c.tag:  # before the link: a tag is only used once its content is linked
            await self.set_tag(c.registry, c.repository, c.tag[0], c.digest, c.media_type,
                               c.tag[1])  # fmt: skip
        await self._put(key, link)
        return before is None

    async def forget(self, digests: Iterable[str]) -> None:
        for digest in digests:
            keys = [key async for key, _, _ in self._list(self.location.links(digest))]
            for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 at most
                await self._delete(keys[start : start + 1000])

    async def touch(self, accesses: list[tuple[str, float, int]]) -> None:
        if accesses:
            await self._put(self.location.access_batch(time.time(), self.replica), accesses)

    async def totals(self) -> tuple[int, int]:
        sizes = [size async for _, size, _ in self._blobs()]
        return sum(sizes), len(sizes)

    async def entries(self) -> list[Entry]:
        """All content, least recently used first, with the access batches merged."""
        accesses = await self.accesses()
        entries = []
        async for digest, size, created in self._blobs():
            last, hits = accesses.get(digest, (created, 0))
            entries.append(Entry(digest, size, "", "blob", created, max(last, created), hits))
        entries.sort(key=lambda e: (e.last_access, e.digest))
        return entries

    async def accesses(self) -> dict[str, tuple[float, int]]:
        """digest -> (last access, hits) over every batch in the bucket."""
        merged: dict[str, tuple[float, int]] = {}
        async for key, _, _ in self._list(self.location.access):
            with _written(key):
                for digest, last, hits in await self._get(key) or []:
                    before = merged.get(digest, (0.0, 0))
                    merged[digest] = (max(before[0], float(last)), before[1] + int(hits))
        return merged

    async def access_batches(self) -> list[str]:
        return [key async for key, _, _ in self._list(self.location.access)]

    async def fold(self, accesses: list[tuple[str, float, int]], batches: list[str]) -> None:
        """Replace the access `batches` (read already) by one holding `accesses`."""
        await self.touch(accesses)
        for start in range(0, len(batches), 1000):
            await self._delete(batches[start : start + 1000])

    def close(self) -> None:
        """The client is closed with the cache (addon.py)."""

    async def _blobs(self):  # type: ignore[no-untyped-def]
        async for key, size, modified in self._list(self.location.prefix + "blobs/"):
            if digest := self.location.digest_of(key):
                yield digest, size, modified

    async def _list(self, prefix: str):  # type: ignore[no-untyped-def]
        """(key, size, last modified) of every object under `prefix`."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            async for page in pages:
                for o in page.get("Contents", []):
                    yield o["Key"], o["Size"], o["LastModified"].timestamp()
        except S3_ERRORS as e:
            raise CatalogError(f"cache bucket unusable: {e}") from e

    async def _get(self, key: str) -> Any:
        """The JSON object at `key`; None if there is none."""
        try:
            said = await self.client.get_object(Bucket=self.location.bucket, Key=key)
            async with said["Body"] as body:
                return json.loads(await body.read())
        except S3_ERRORS as e:
            if missing(e):
                return None
            raise CatalogError(f"cache bucket unusable: {e}") from e
        except ValueError as e:
            raise CatalogError(f"cache object {key} is not what regmirror wrote: {e}") from e

    async def _delete(self, keys: list[str]) -> None:
        if keys:
            objects = [{"Key": key} for key in keys]
            await self._call("delete_objects", Delete={"Objects": objects, "Quiet": True})

    async def _put(self, key: str, value: object) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        await self._call("put_object", Key=key, Body=body, ContentType="application/json")

    async def _call(self, method: str, **params: Any) -> Any:
        try:
            return await getattr(self.client, method)(Bucket=self.location.bucket, **params)
        except S3_ERRORS as e:
            raise CatalogError(f"cache bucket unusable: {e}") from e


@contextlib.contextmanager
def _written(key: str) -> Iterator[None]:
    """Reading the fields of the object at `key`: anything but what regmirror writes there
    is a CatalogError, never a crash."""
    try:
        yield
    except (ValueError, KeyError, TypeError) as e:
        raise CatalogError(f"cache object {key} is not what regmirror wrote: {e!r}") from e

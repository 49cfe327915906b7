"""The S3 catalog, uploads, content and the eviction lease against moto's S3 server (the
stand-in for real S3: tests/support/s3server.py)."""

import asyncio
import contextlib
import hashlib

import pytest
from regmirror.cache.catalog import Committed
from regmirror.cache.errors import CatalogError
from regmirror.cache.s3.catalog import S3Catalog
from regmirror.cache.s3.client import open_client
from regmirror.cache.s3.lease import Lease
from regmirror.cache.s3.location import S3Location
from regmirror.cache.s3.upload import PART_SIZE, upload

from tests.support.s3server import CREDENTIALS

BODY = b"x" * 1000
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


@pytest.fixture
async def s3(s3_server, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    where = S3Location(s3_server.bucket(), "c/")
    async with contextlib.AsyncExitStack() as stack:
        yield await open_client(stack, s3_server.url), where


def committed(provenance: str, tag: tuple[str, float] | None = None) -> Committed:
    return Committed(DIGEST, len(BODY), "application/x", "blob", 10.0, "docker.io", "library/x",
                     provenance, tag)  # fmt: skip


async def test_links_and_tags_round_trip_and_links_only_become_more_public(s3):
    client, where = s3
    catalog = S3Catalog(client, where, "r1")
    assert await catalog.linked("docker.io", "library/x", DIGEST) is None
    assert await catalog.record(committed("client", ("1", 10.0))) is True
    link = await catalog.linked("docker.io", "library/x", DIGEST)
    said = (link.provenance, link.size, link.media_type, link.kind)
    assert said == ("client", 1000, "application/x", "blob")
    tag = await catalog.tag("docker.io", "library/x", "1")
    assert (tag.digest, tag.media_type, tag.validated) == (DIGEST, "application/x", 10.0)
    await catalog.record(committed("anonymous"))
    await catalog.record(committed("client"))  # never narrows again
    assert (await catalog.linked("docker.io", "library/x", DIGEST)).provenance == "anonymous"
    assert await catalog.linked("docker.io", "library/y", DIGEST) is None  # per repository
    await catalog.drop_tag("docker.io", "library/x", "1")
    assert await catalog.tag("docker.io", "library/x", "1") is None
    await catalog.forget([DIGEST])
    assert await catalog.linked("docker.io", "library/x", DIGEST) is None


async def test_access_batches_merge_into_entries_and_fold_into_one(s3, s3_server):
    client, where = s3
    await client.put_object(Bucket=where.bucket, Key=where.blob(DIGEST), Body=BODY)
    first, second = S3Catalog(client, where, "r1"), S3Catalog(client, where, "r2")
    await first.touch([(DIGEST, 5e9, 2)])
    await second.touch([(DIGEST, 6e9, 3)])
    await second.touch([])  # nothing to write: no object
    (entry,) = await first.entries()
    assert (entry.digest, entry.size, entry.last_access, entry.hits) == (DIGEST, 1000, 6e9, 5)
    assert await first.totals() == (1000, 1)
    batches = await first.access_batches()
    assert len(batches) == 2
    await first.fold([(DIGEST, 6e9, 5)], batches)
    assert len(await first.access_batches()) == 1
    assert (await first.accesses())[DIGEST] == (6e9, 5)


async def test_objects_not_written_by_regmirror_are_catalog_errors(s3):
    client, where = s3
    catalog = S3Catalog(client, where, "r1")
    key = where.link("docker.io", "library/x", DIGEST)
    for body in (b"not json", b'{"provenance": "client"}', b"[1, 2]"):
        await client.put_object(Bucket=where.bucket, Key=key, Body=body)
        with pytest.raises(CatalogError, match="not what regmirror wrote"):
            await catalog.linked("docker.io", "library/x", DIGEST)


async def test_an_unreachable_bucket_is_a_catalog_error(s3):
    client, _ = s3
    catalog = S3Catalog(client, S3Location("no-such-bucket-here", ""), "r1")
    with pytest.raises(CatalogError, match="cache bucket unusable"):
        await catalog.linked("docker.io", "library/x", DIGEST)


async def chunks(data: bytes, fail_at: int | None = None):
    for pos in range(0, len(data), 1 << 20):
        if fail_at is not None and pos >= fail_at:
            raise RuntimeError("the fill failed")
        yield data[pos : pos + (1 << 20)]


@pytest.mark.parametrize("size", [1000, PART_SIZE * 2 + 5])
async def test_an_upload_is_whole_when_it_completes(s3, size):
    client, where = s3
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    await upload(client, where.bucket, "k", chunks(data), size, "application/x")
    said = await client.get_object(Bucket=where.bucket, Key="k")
    assert await said["Body"].read() == data


async def test_a_failed_upload_leaves_nothing_visible_nor_pending(s3, s3_server):
    client, where = s3
    data = b"y" * (PART_SIZE * 2 + 5)
    with pytest.raises(RuntimeError):
        await upload(client, where.bucket, "k", chunks(data, fail_at=PART_SIZE + 1), len(data),
                     "application/x")  # fmt: skip
    assert s3_server.keys(where.bucket) == []
    assert s3_server.uploads(where.bucket) == []  # aborted


async def test_one_replica_at_a_time_holds_the_lease(s3):
    client, where = s3
    a, b = Lease(client, where, "a"), Lease(client, where, "b")
    assert await a.acquire(100.0)
    assert not await b.acquire(101.0)
    assert await a.acquire(102.0)  # its own: renewed
    assert await b.acquire(102.0 + 10_000)  # expired: taken over
    assert not await a.acquire(102.0 + 10_001)
    await b.release()
    assert await a.acquire(102.0 + 10_002)


async def test_replicas_racing_for_a_free_lease_leave_one_holder(s3):
    client, where = s3
    for attempt in range(3):
        now = 100.0 + attempt * 10_000  # each round starts with the last lease expired
        won = await asyncio.gather(*(Lease(client, where, n).acquire(now) for n in "abcd"))
        assert sorted(won) == [False, False, False, True], won


async def test_a_bucket_that_cannot_be_asked_is_unknown_and_nothing_is_forgotten(s3):
    from prometheus_client import CollectorRegistry
    from regmirror.cache.content import UNKNOWN
    from regmirror.cache.lookup import Lookup
    from regmirror.cache.metrics import CacheMetrics
    from regmirror.cache.s3.content import S3Content

    _, where = s3
    async with contextlib.AsyncExitStack() as stack:
        down = await open_client(stack, "http://127.0.0.1:9")  # nothing listens there
        content = S3Content(down, where)
        assert await content.check(DIGEST, len(BODY)) == UNKNOWN

        class Catalog:
            forgotten: list[str] = []

            async def forget(self, digests):
                self.forgotten.extend(digests)

        catalog = Catalog()
        metrics = CacheMetrics(CollectorRegistry())
        lookup = Lookup(None, catalog, content, None, metrics)  # type: ignore[arg-type]
        assert await lookup.intact(DIGEST, len(BODY)) is False
        assert catalog.forgotten == []  # a transient fault: the links stay
        assert metrics.faults.labels("file")._value.get() == 1

import asyncio
import errno
import hashlib
import os
import time
from contextlib import aclosing

import pytest
from regmirror.cache import fill as fill_module
from regmirror.cache.errors import Aborted, CacheError, DigestMismatch, DiskError
from regmirror.cache.store import GRACE, Store, cacheable

BODY = os.urandom(100_000)
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
HEX = DIGEST.removeprefix("sha256:")


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "cache")


async def committed(store, body=BODY):
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    fill = store.fill(digest, len(body))
    fill.write(body)
    await fill.commit()
    return digest


def test_open_creates_the_layout_and_leaves_no_probe(tmp_path):
    store = Store.open(tmp_path / "a" / "b")
    root = tmp_path / "a" / "b"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "blobs",
        "blobs/sha256",
        "blobs/sha512",
        "tmp",
    ]
    assert store.path(DIGEST) == root / "blobs" / "sha256" / HEX[:2] / HEX
    assert Store.open(root).root == root  # again: fine


def test_open_names_the_path_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match=f"{tmp_path}/file/cache cannot be created"):
        Store.open(tmp_path / "file" / "cache")


def test_open_names_the_path_it_cannot_write(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tempfile.mkstemp", no_space)
    with pytest.raises(CacheError, match="cache cannot be created or written: No space"):
        Store.open(tmp_path / "cache")


@pytest.mark.parametrize(
    "digest,ok",
    [
        (DIGEST, True),
        ("sha512:" + "a" * 128, True),
        ("sha256:" + HEX.upper(), False),
        ("sha256:" + HEX[:-1], False),
        ("sha256:" + HEX + "0", False),
        ("sha256:" + HEX + "\n", False),
        ("sha384:" + "a" * 96, False),
        ("sha512:" + "a" * 64, False),
        ("sha256:../../../../etc/passwd", False),
        ("sha256:" + "../" * 21 + "x", False),
        (HEX, False),
        ("", False),
    ],
)
def test_only_cacheable_digests_become_paths(store, digest, ok):
    assert cacheable(digest) is ok
    if ok:
        assert store.path(digest).is_relative_to(store.blobs)
        assert store.fill(digest) is not None
    else:
        with pytest.raises(ValueError):
            store.path(digest)
        assert store.fill(digest) is None
        assert not store.has(digest) and store.size(digest) is None


async def test_has_size_remove_scan(store):
    assert not store.has(DIGEST) and store.size(DIGEST) is None
    small = await committed(store, b"small")
    await committed(store)
    assert store.has(DIGEST) and store.size(DIGEST) == len(BODY)
    # names that are not committed digests are skipped, not removed
    (store.blobs / "sha256" / "zz").mkdir()
    (store.blobs / "sha256" / "zz" / HEX).write_text("wrong directory")
    (store.path(DIGEST).parent / "notadigest").write_text("")
    (store.blobs / "sha256" / "ab").write_text("a file, not a directory")
    assert sorted(store.scan()) == sorted([(DIGEST, len(BODY)), (small, 5)])
    assert store.remove(DIGEST) and not store.remove(DIGEST)
    assert list(store.scan()) == [(small, 5)]
    assert (store.blobs / "sha256" / "zz" / HEX).exists()


async def test_recover_removes_what_dead_processes_left_but_not_live_fills(store):
    live = store.fill(DIGEST, len(BODY))
    live.write(BODY[:10])
    (store.tmp / "0123456789abcdef.dead").write_bytes(b"partial")
    (store.tmp / "leftover-dir").mkdir()
    (store.tmp / "leftover-dir" / "x").write_text("")
    (store.blobs / ".probe-xyz").write_text("")
    (store.blobs / ".probe-new").write_text("")  # another process starting right now
    old = time.time() - GRACE - 1
    os.utime(store.blobs / ".probe-xyz", (old, old))
    removed = store.recover()
    assert sorted(p.name for p in removed) == [
        ".probe-xyz",
        "0123456789abcdef.dead",
        "leftover-dir",
    ]
    assert os.listdir(store.tmp) == [live.tmp_path.name]
    live.write(BODY[10:])
    await live.commit()
    assert store.path(DIGEST).read_bytes() == BODY
    assert store.recover() == []


def test_reading_marks_a_digest_in_use(store):
    assert store.in_use() == set()
    with store.reading(DIGEST), store.reading(DIGEST):
        assert store.in_use() == {DIGEST}
    assert store.in_use() == set()


async def collect(store, fill, start=0, seen=None):
    got = bytearray()
    async with aclosing(store.follow(fill, start, chunk=7000)) as stream:
        async for data in stream:
            got += data
            if seen is not None:
                seen.append(len(got))
    return bytes(got)


async def settle():
    """Let every follower catch up with what has been written."""
    for _ in range(50):
        await asyncio.sleep(0)


async def feed(fill, body, size=9000):
    for i in range(0, len(body), size):
        fill.write(body[i : i + size])
        await asyncio.sleep(0)


async def test_followers_get_exactly_the_bytes_as_they_are_written(store):
    fill = store.fill(DIGEST, len(BODY))
    seen: list[int] = []
    readers = [asyncio.create_task(collect(store, fill, seen=seen))]
    readers += [asyncio.create_task(collect(store, fill, start=s)) for s in (0, 1, 50_000)]
    await asyncio.sleep(0)
    assert store.in_use() == {DIGEST}
    await feed(fill, BODY)
    await settle()
    # everything but the last byte while the digest is unchecked
    assert seen[-1] == len(BODY) - 1 and all(not r.done() for r in readers)
    commit = asyncio.create_task(fill.commit())
    late = asyncio.create_task(collect(store, fill))  # opens while the commit's thread runs
    await commit
    after = await collect(store, fill, start=99_990)  # opens the committed file
    results = await asyncio.gather(*readers, late)
    assert results == [BODY, BODY, BODY[1:], BODY[50_000:], BODY]
    assert after == BODY[99_990:]
    assert len(seen) > 3  # streamed as it grew, not at the end
    assert store.in_use() == set()


async def test_followers_of_a_body_of_unknown_size_end_only_after_verification(store):
    fill = store.fill(DIGEST, None)
    reader = asyncio.create_task(collect(store, fill))
    await feed(fill, BODY)
    await settle()
    assert not reader.done()
    fill.verify()
    assert await reader == BODY


async def test_followers_see_a_digest_mismatch_and_never_the_whole_body(store):
    fill = store.fill(DIGEST, len(BODY))
    seen: list[int] = []
    readers = [asyncio.create_task(collect(store, fill, seen=seen)) for _ in range(3)]
    await feed(fill, BODY[:-1] + bytes([BODY[-1] ^ 1]))
    await settle()
    with pytest.raises(DigestMismatch):
        await fill.commit()
    for result in await asyncio.gather(*readers, return_exceptions=True):
        assert isinstance(result, DigestMismatch)
    assert max(seen) == len(BODY) - 1
    with pytest.raises(DigestMismatch):
        await collect(store, fill)  # a follower that comes too late
    assert store.in_use() == set() and os.listdir(store.tmp) == []


async def test_followers_fail_on_a_disk_error_and_an_abort(store, monkeypatch):
    fill = store.fill(DIGEST, len(BODY))
    reader = asyncio.create_task(collect(store, fill))
    await feed(fill, BODY[:30_000])

    def eio(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fill_module.os, "write", eio)
    await feed(fill, BODY[30_000:])
    with pytest.raises(DiskError):
        await reader
    aborted = store.fill(DIGEST, len(BODY))
    monkeypatch.undo()
    reader = asyncio.create_task(collect(store, aborted))
    await feed(aborted, BODY[:30_000])
    aborted.abort()
    with pytest.raises(Aborted):
        await reader


async def test_a_cancelled_follower_does_not_disturb_the_others(store):
    fill = store.fill(DIGEST, len(BODY))
    doomed = asyncio.create_task(collect(store, fill))
    kept = asyncio.create_task(collect(store, fill))
    await feed(fill, BODY[:10_000])
    doomed.cancel()
    await feed(fill, BODY[10_000:])
    await fill.commit()
    assert await kept == BODY
    assert doomed.cancelled()

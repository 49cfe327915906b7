import asyncio
import errno
import hashlib
import os

import pytest
from regmirror.cache import fill as fill_module
from regmirror.cache.errors import (
    Aborted,
    DigestMismatch,
    DiskError,
    FillFailed,
    LongBody,
    ShortBody,
)
from regmirror.cache.store import Store

BODY = bytes(range(256)) * 40  # 10 KiB
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
DIGEST512 = "sha512:" + hashlib.sha512(BODY).hexdigest()


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "cache")


def chunks(data, size=1000):
    return [data[i : i + size] for i in range(0, len(data), size)]


def tmp_files(store):
    return sorted(os.listdir(store.tmp))


@pytest.mark.parametrize("digest", [DIGEST, DIGEST512])
@pytest.mark.parametrize("expected", [len(BODY), None])
async def test_fill_commits_atomically_into_place(store, digest, expected):
    fill = store.fill(digest, expected)
    assert store.filling(digest) is fill and digest in store.in_use()
    for c in chunks(BODY):
        fill.write(c)
    assert fill.written == len(BODY) and not store.has(digest)
    assert len(tmp_files(store)) == 1
    recorded = []

    async def record():
        recorded.append(store.path(digest).read_bytes())

    await fill.commit(record)
    assert recorded == [BODY]  # the record runs after the file is in place
    assert fill.committed and fill.verified and not fill.failed and fill.reason is None
    assert store.path(digest).read_bytes() == BODY and store.size(digest) == len(BODY)
    assert tmp_files(store) == [] and store.filling(digest) is None and not store.in_use()
    await fill.commit()  # again: nothing to do
    with pytest.raises(RuntimeError):
        fill.write(b"x")


FLIPPED = BODY[:100] + bytes([BODY[100] ^ 1]) + BODY[101:]


@pytest.mark.parametrize(
    "body,expected,error,reason",
    [
        (FLIPPED, len(BODY), DigestMismatch, "digest mismatch"),
        (FLIPPED, None, DigestMismatch, "digest mismatch"),
        (BODY[:-1], len(BODY), ShortBody, "short body"),
        (BODY[:-1], None, DigestMismatch, "digest mismatch"),
        (BODY + b"x", len(BODY), LongBody, "long body"),
    ],
)
async def test_a_wrong_body_is_never_committed_and_leaves_no_file(
    store, body, expected, error, reason
):
    fill = store.fill(DIGEST, expected)
    for c in chunks(body):
        fill.write(c)
    with pytest.raises(error) as e:
        await fill.commit()
    assert e.value.reason == reason == fill.reason
    assert isinstance(e.value, FillFailed) and fill.failed and not fill.committed
    assert not store.has(DIGEST) and tmp_files(store) == []
    assert store.filling(DIGEST) is None
    with pytest.raises(error):
        fill.verify()  # the verdict stays


async def test_a_long_body_fails_at_the_chunk_that_overruns(store):
    fill = store.fill(DIGEST, 10)
    fill.write(b"x" * 10)
    assert not fill.failed
    fill.write(b"y")
    assert fill.reason == "long body" and tmp_files(store) == []


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_enospc_marks_the_fill_failed_while_write_keeps_returning(store, monkeypatch):
    fill = store.fill(DIGEST, len(BODY))
    parts = chunks(BODY)
    fill.write(parts[0])
    monkeypatch.setattr(fill_module.os, "write", enospc)
    for c in parts[1:]:
        assert fill.write(c) is None  # never raises to the streaming caller
    assert fill.failed and fill.reason == "disk error" and "No space" in str(fill.failure)
    assert fill.written == len(BODY) and tmp_files(store) == []
    assert store.filling(DIGEST) is None  # the next request fills afresh
    fill.verify()  # still hashed: the client got the right bytes
    with pytest.raises(DiskError):
        await fill.commit()
    assert not store.has(DIGEST)


async def test_after_a_disk_error_a_wrong_body_is_still_detected(store, monkeypatch):
    fill = store.fill(DIGEST, len(BODY))
    monkeypatch.setattr(fill_module.os, "write", enospc)
    fill.write(BODY[:-1] + b"!")
    with pytest.raises(DigestMismatch):
        fill.verify()
    assert fill.reason == "digest mismatch"


async def test_partial_writes_are_completed(store, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(fill_module.os, "write", lambda fd, data: real_write(fd, data[:7]))
    fill = store.fill(DIGEST, len(BODY))
    for c in chunks(BODY):
        fill.write(c)
    monkeypatch.undo()
    await fill.commit()
    assert store.path(DIGEST).read_bytes() == BODY


@pytest.mark.parametrize("step", ["fsync", "replace", "record"])
async def test_a_failed_commit_removes_every_file(store, monkeypatch, step):
    fill = store.fill(DIGEST, len(BODY))
    fill.write(BODY)
    record = None
    if step == "record":

        async def record():
            raise RuntimeError("index is busy")
    else:
        monkeypatch.setattr(fill_module.os, step, enospc)
    with pytest.raises(DiskError):
        await fill.commit(record)
    monkeypatch.undo()
    assert fill.reason == "disk error" and not fill.committed and not fill.verified
    assert not store.has(DIGEST) and tmp_files(store) == [] and store.filling(DIGEST) is None


async def test_a_second_commit_of_present_content_replaces_the_file_and_never_removes_it(store):
    first = store.fill(DIGEST, len(BODY))
    first.write(BODY)
    await first.commit()
    rotted = BODY[:-1] + b"!"
    store.path(DIGEST).write_bytes(rotted)  # bit rot: nothing vouches for a file on disk
    again = store.fill(DIGEST, len(BODY))  # the same blob through another repository
    again.write(BODY)

    async def record():
        raise RuntimeError("index is busy")

    with pytest.raises(DiskError):
        await again.commit(record)
    # the verified bytes are in place, and the file (which has a row) was not removed
    assert store.path(DIGEST).read_bytes() == BODY and tmp_files(store) == []
    with open(store.path(DIGEST), "rb") as reader:  # a reader keeps the file it opened
        third = store.fill(DIGEST, len(BODY))
        third.write(BODY)
        await third.commit()
        assert reader.read() == BODY
    assert store.path(DIGEST).read_bytes() == BODY and tmp_files(store) == []


async def test_a_temporary_file_that_cannot_be_created_starts_the_fill_failed(store, monkeypatch):
    monkeypatch.setattr("tempfile.mkstemp", enospc)
    fill = store.fill(DIGEST, len(BODY))
    assert fill.reason == "disk error" and store.filling(DIGEST) is None
    fill.write(BODY)
    fill.verify()
    with pytest.raises(DiskError):
        await fill.commit()


async def test_a_cancelled_commit_still_ends_the_fill(store):
    fill = store.fill(DIGEST, len(BODY))
    fill.write(BODY)
    task = asyncio.create_task(fill.commit())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while not fill.ended:
        await fill.wait()
    assert fill.committed and store.path(DIGEST).read_bytes() == BODY
    assert store.filling(DIGEST) is None


async def test_abort_removes_the_temporary_file(store):
    fill = store.fill(DIGEST, len(BODY))
    fill.write(BODY[:10])
    fill.abort()
    assert fill.reason == "aborted" and tmp_files(store) == [] and store.filling(DIGEST) is None
    fill.write(BODY[10:])  # the owner's stream may still deliver: ignored
    with pytest.raises(Aborted):
        fill.verify()
    with pytest.raises(Aborted):
        await fill.commit()
    committed = store.fill(DIGEST, len(BODY))
    committed.write(BODY)
    await committed.commit()
    committed.abort()  # after the end: nothing happens
    assert committed.committed and store.has(DIGEST)

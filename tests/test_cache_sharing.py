"""Two processes sharing one cache directory (replicas, or the mirror beside the cache
command line), each step of one caught in the middle of the other's: a second `Store` and
`Index` of the same directory act as the other process (flock conflicts between two open
files also within one process)."""

import hashlib
import os
import time

from regmirror.cache import store as store_module
from regmirror.cache.opening import open_cache

BODY = b"layer bytes" * 1000
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


async def test_a_start_during_a_commits_rename_leaves_the_verified_file(tmp_path, monkeypatch):
    store, _ = open_cache(str(tmp_path / "cache"))
    other, _ = open_cache(str(tmp_path / "cache"))
    fill = store.fill(DIGEST, len(BODY))
    fill.write(BODY)
    removed = []
    real = os.replace

    def replace(src, dst):
        monkeypatch.setattr(os, "replace", real)
        removed.extend(other.recover())  # the other process starts right now
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    await fill.commit()
    assert removed == [] and fill.committed
    assert store.path(DIGEST).read_bytes() == BODY


async def test_a_start_between_a_commits_file_and_its_row_keeps_the_file(tmp_path):
    store, index = open_cache(str(tmp_path / "cache"))
    fill = store.fill(DIGEST, len(BODY))
    fill.write(BODY)

    async def record() -> None:  # the other process starts before the row is written
        open_cache(str(tmp_path / "cache"))
        index.add(DIGEST, len(BODY), "application/octet-stream", "blob", time.time())

    await fill.commit(record)
    assert store.path(DIGEST).read_bytes() == BODY and index.count() == 1


def test_an_old_file_without_a_row_is_still_removed_at_start(tmp_path):
    store, index = open_cache(str(tmp_path / "cache"))
    path = store.path(DIGEST)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BODY)
    old = time.time() - store_module.GRACE - 1
    os.utime(path, (old, old))
    _, again = open_cache(str(tmp_path / "cache"))
    assert not path.exists() and again.count() == 0


def test_two_starts_at_once_both_succeed(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    open_cache(str(root))
    other = store_module.Store(root)
    real = os.replace
    seen = []

    def replace(src, dst):  # the first process's probe, between its write and its rename
        monkeypatch.setattr(os, "replace", real)
        seen.extend(other.recover())
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store = store_module.Store.open(root)
    assert seen == [] and store.root == root

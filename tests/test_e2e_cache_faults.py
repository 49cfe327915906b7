"""End to end: faults of the cache (issue 8, item 13) really caused: a full disk during a
fill (a small tmpfs mounted as the cache), a cached file corrupted on disk, the SQLite index
locked by another process and damaged between two runs. In each case the mirror keeps
serving from the upstream, says so in its log and metrics, and never serves bad bytes.
Real parts: distribution with token auth per test, skopeo, the mirror as `mitmdump -s`."""

import hashlib
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from bench.blobs import Pusher
from tests.support.clients import Skopeo
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_stored,
    by_digest,
    cache_mirror,
    check_dir_copy,
    eventually,
    metric,
    mirror_token,
    stored_path,
)

pytestmark = pytest.mark.e2e


def copy(skopeo: Skopeo, mirror, repo: str, out: Path) -> None:
    skopeo.copy(f"{mirror.host}/{repo}:1", f"dir:{out}")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted at tmp_path/cache (as root, which run.sh test is)."""
    mount = tmp_path / "cache"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_fill_keeps_the_pull_going(
    mirror_factory, tmp_path, upstream_factory, images, skopeo, small_disk
):
    up = upstream_factory(repos=["library/big"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)  # tmp_path/cache: the tmpfs
    big = images["library/big"]
    copy(skopeo, mirror, "library/big", tmp_path / "out")
    check_dir_copy(tmp_path / "out", big)  # every byte right: the client never noticed
    layer = max(big.single.layers, key=lambda layer: layer.size)
    assert layer.size > 2 << 20
    eventually(lambda: "disk error" in mirror.log_text(), lambda: "no disk error logged")
    assert metric(mirror, "regmirror_cache_fill_failures_total", reason="disk error") >= 1
    assert not stored_path(small_disk, layer.digest).exists()
    assert not any((small_disk / "tmp").iterdir())  # the partial fill is gone


def test_a_file_corrupted_on_disk_is_dropped_and_fetched_again(
    mirror_factory, tmp_path, upstream_factory, images
):
    up = upstream_factory(repos=["library/testimg"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    testimg = images["library/testimg"]
    copy(Skopeo(tmp_path / "s1"), mirror, "library/testimg", tmp_path / "one")
    layer = testimg.single.layers[0].digest
    assert_stored(tmp_path / "cache", [layer])
    path = stored_path(tmp_path / "cache", layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other bytes
    log = UpstreamLog(up.registry)
    start = log.mark()
    copy(Skopeo(tmp_path / "s2"), mirror, "library/testimg", tmp_path / "two")
    check_dir_copy(tmp_path / "two", testimg)  # the client got the right bytes
    end = log.mark()
    assert layer in {e.path.rsplit("/", 1)[1] for e in by_digest(log.between(start, end))}
    assert "corrupted on disk: dropped" in mirror.log_text()
    assert metric(mirror, "regmirror_cache_faults_total", kind="file") >= 1
    assert_stored(tmp_path / "cache", [layer])  # fetched again and kept, verified


def test_a_locked_index_fails_the_fills_not_the_pulls(
    mirror_factory, tmp_path, upstream_factory, images
):
    up = upstream_factory(repos=["library/testimg"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)  # the index exists from the start
    testimg = images["library/testimg"]
    holder = sqlite3.connect(tmp_path / "cache" / "index.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        copy(Skopeo(tmp_path / "s1"), mirror, "library/testimg", tmp_path / "one")
        check_dir_copy(tmp_path / "one", testimg)  # the pull did not wait for the index
        eventually(
            lambda: "failed: disk error" in mirror.log_text(),
            lambda: "no failed fill logged",
            timeout=20,  # each fill gives up after the index's 5 s busy timeout
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert metric(mirror, "regmirror_cache_fill_failures_total", reason="disk error") >= 1
    # fills still waiting for the lock when it went may commit: but once they end, never a
    # file without its row (a commit adds its row before it ends, or removes its file)

    def rowless() -> list[str]:
        with sqlite3.connect(tmp_path / "cache" / "index.db") as index:
            rows = {d for (d,) in index.execute("SELECT digest FROM content")}
        cache = tmp_path / "cache"
        return [
            d for d in testimg.single.digests if stored_path(cache, d).exists() and d not in rows
        ]

    eventually(lambda: not rowless(), lambda: f"files without their rows: {rowless()}", 10)


def test_a_damaged_index_is_set_aside_and_the_mirror_serves_on(
    mirror_factory, tmp_path, upstream_factory, images
):
    up = upstream_factory(repos=["library/testimg"])
    first = cache_mirror(mirror_factory, tmp_path, up.url)
    copy(Skopeo(tmp_path / "s1"), first, "library/testimg", tmp_path / "one")
    layer = images["library/testimg"].single.layers[0].digest
    assert_stored(tmp_path / "cache", [layer])
    first.stop()
    index = tmp_path / "cache" / "index.db"
    for extra in (index.with_name("index.db-wal"), index.with_name("index.db-shm")):
        extra.unlink(missing_ok=True)
    index.write_bytes(b"this is no SQLite database" * 100)
    (tmp_path / "again").mkdir()
    second = cache_mirror(mirror_factory, tmp_path / "again", up.url,
                          regmirror_cache=str(tmp_path / "cache"))  # fmt: skip
    assert "is damaged" in second.log_text()
    assert list((tmp_path / "cache").glob("index.db.damaged-*"))
    copy(Skopeo(tmp_path / "s2"), second, "library/testimg", tmp_path / "two")
    check_dir_copy(tmp_path / "two", images["library/testimg"])
    assert_stored(tmp_path / "cache", [layer])  # kept again under the new index


def test_a_fill_killed_with_sigkill_is_never_served_and_the_pull_is_correct_after_restart(
    mirror_factory, tmp_path, upstream_factory
):
    """Crash safety: SIGKILL during a 256 MiB fill leaves only a temporary file, which the
    next start removes; what is served after the restart is the whole, right blob."""
    up = upstream_factory(repos=[])
    access = [{"type": "repository", "name": "library/huge", "actions": ["pull", "push"]}]
    with Pusher(up.registry.url, up.token_server.issue_token("pusher", access=access)) as p:
        blob = p.blob("library/huge", 256 << 20, 11)
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    path = f"/v2/library/huge/blobs/{blob.digest}"
    with httpx.Client(base_url=mirror.url, timeout=60) as c:
        auth = mirror_token(c, "library/huge")
        with c.stream("GET", path, headers=auth) as r:
            assert r.status_code == 200
            got = 0
            for chunk in r.iter_bytes():
                got += len(chunk)
                if got > 64 << 20:
                    os.kill(mirror.pid, signal.SIGKILL)  # mid-fill
                    break
    mirror.proc.stop()
    assert list((cache / "tmp").iterdir())  # the killed fill's temporary file
    assert not stored_path(cache, blob.digest).exists()

    (tmp_path / "again").mkdir()
    again = cache_mirror(mirror_factory, tmp_path / "again", up.url, regmirror_cache=str(cache))
    assert not list((cache / "tmp").iterdir())  # removed at start
    with httpx.Client(base_url=again.url, timeout=60) as c:
        auth = mirror_token(c, "library/huge")
        h = hashlib.sha256()
        with c.stream("GET", path, headers=auth) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == blob.digest
        eventually(lambda: stored_path(cache, blob.digest).exists(), lambda: "not stored")
        hit = c.head(path, headers=auth)
        assert (hit.status_code, hit.headers["Content-Length"]) == (200, str(256 << 20))
    assert "cache hit" in again.log_text()

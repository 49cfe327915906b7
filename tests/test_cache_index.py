import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from regmirror.cache.errors import CacheError
from regmirror.cache.index import SCHEMA_VERSION, Entry, Index, Link, Reconciled, Tag
from regmirror.cache.store import GRACE, Store

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/octet-stream"
R = "registry-1.docker.io"


@pytest.fixture
def index(tmp_path):
    index = Index.open(tmp_path / "index.db")
    yield index
    index.close()


def test_open_creates_a_versioned_wal_schema(tmp_path, index):
    db = sqlite3.connect(tmp_path / "index.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"content", "links", "tags"}
    db.close()
    Index.open(tmp_path / "index.db").close()  # opening again keeps it


def test_open_refuses_a_newer_schema_and_an_unusable_file(tmp_path):
    db = sqlite3.connect(tmp_path / "newer.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(CacheError, match=f"{tmp_path}/newer.db has schema {SCHEMA_VERSION + 1}"):
        Index.open(tmp_path / "newer.db")
    (tmp_path / "garbage.db").write_bytes(b"not a database, just text" * 100)
    with pytest.raises(CacheError, match=f"{tmp_path}/garbage.db cannot be used"):
        Index.open(tmp_path / "garbage.db")
    with pytest.raises(CacheError, match=f"{tmp_path}/missing/index.db cannot be used"):
        Index.open(tmp_path / "missing" / "index.db")


def test_content_links_and_lookups(index):
    index.add(A, 100, OCI, "manifest", now=10.0)
    index.add(B, 5000, LAYER, "blob", now=11.0)
    index.link(R, "library/nginx", A, "anonymous")
    assert index.linked(R, "library/nginx", A) == Link(
        R, "library/nginx", A, "anonymous", 100, OCI, "manifest"
    )
    assert index.linked(R, "library/other", A) is None  # a link is per repository
    assert index.linked("ghcr.io", "library/nginx", A) is None
    assert index.linked(R, "library/nginx", B) is None
    index.add(A, 100, OCI, "manifest", now=20.0)  # again: refreshes the access only
    index.add(A, 100, OCI, "manifest", now=15.0)
    assert index.entries() == [
        Entry(B, 5000, LAYER, "blob", 11.0, 11.0, 0),
        Entry(A, 100, OCI, "manifest", 10.0, 20.0, 0),
    ]
    assert index.total_size() == 5100 and index.count() == 2


def test_links_and_tags_need_content_and_known_values(index):
    with pytest.raises(sqlite3.IntegrityError):
        index.link(R, "x", A, "anonymous")
    with pytest.raises(sqlite3.IntegrityError):
        index.set_tag(R, "x", "latest", A, OCI, 1.0)
    with pytest.raises(ValueError, match="unknown provenance 'public'"):
        index.link(R, "x", A, "public")
    with pytest.raises(sqlite3.IntegrityError):
        index.add(A, 1, OCI, "layer", 1.0)


@pytest.mark.parametrize(
    "first,then,result",
    [
        ("client", "client", "client"),
        ("client", "route", "route"),
        ("client", "anonymous", "anonymous"),  # anonymous access proved it public
        ("route", "client", "route"),  # a client fetch never makes it private again
        ("route", "anonymous", "anonymous"),
        ("anonymous", "client", "anonymous"),
        ("anonymous", "route", "anonymous"),
    ],
)
def test_a_link_only_becomes_more_public(index, first, then, result):
    index.add(A, 1, LAYER, "blob", 1.0)
    index.link(R, "org/app", A, first)
    index.link(R, "org/app", A, then)
    assert index.linked(R, "org/app", A).provenance == result


def test_tags(index):
    index.add(A, 1, OCI, "manifest", 1.0)
    index.add(B, 1, OCI, "manifest", 1.0)
    assert index.tag(R, "library/nginx", "latest") is None
    index.set_tag(R, "library/nginx", "latest", A, OCI, validated=5.0)
    assert index.tag(R, "library/nginx", "latest") == Tag(R, "library/nginx", "latest", A, OCI, 5.0)
    index.set_tag(R, "library/nginx", "latest", B, OCI, validated=9.0)  # the tag moved
    assert index.tag(R, "library/nginx", "latest").digest == B
    assert index.tag(R, "library/other", "latest") is None
    assert index.drop_tag(R, "library/nginx", "latest")
    assert not index.drop_tag(R, "library/nginx", "latest")
    assert index.tag(R, "library/nginx", "latest") is None


def test_touch_many_batches_accesses(index):
    index.add(A, 1, LAYER, "blob", 1.0)
    index.add(B, 1, LAYER, "blob", 2.0)
    index.touch_many([(A, 50.0, 3), (B, 1.5, 1), (C, 60.0, 1)])  # C is unknown: ignored
    assert [(e.digest, e.last_access, e.hits) for e in index.entries()] == [
        (B, 2.0, 1),  # an older touch never moves an access back
        (A, 50.0, 3),
    ]


def test_remove_takes_links_and_tags_with_it(index):
    for digest in (A, B, C):
        index.add(digest, 10, OCI, "manifest", 1.0)
        index.link(R, "app", digest, "anonymous")
    index.set_tag(R, "app", "v1", A, OCI, 1.0)
    index.set_tag(R, "app", "v2", B, OCI, 1.0)
    assert index.remove([A, B, "sha256:" + "0" * 64]) == 2
    assert index.linked(R, "app", A) is None and index.tag(R, "app", "v1") is None
    assert index.tag(R, "app", "v2") is None
    assert index.linked(R, "app", C) is not None
    assert [e.digest for e in index.entries()] == [C]
    assert index.remove([]) == 0


async def test_reconcile_makes_rows_and_files_agree(tmp_path, index):
    store = Store.open(tmp_path / "cache")
    bodies = {name: name.encode() * 10 for name in ("kept", "norow", "resized", "busy")}
    digests = {n: "sha256:" + hashlib.sha256(b).hexdigest() for n, b in bodies.items()}
    for name, body in bodies.items():
        fill = store.fill(digests[name], len(body))
        fill.write(body)
        await fill.commit()
        old = time.time() - GRACE - 1  # not a commit of another process in progress
        os.utime(store.path(digests[name]), (old, old))
    for name in ("kept", "resized"):
        index.add(digests[name], len(bodies[name]) + (name == "resized"), LAYER, "blob", 1.0)
    index.add(A, 1, LAYER, "blob", 1.0)  # a row without a file
    index.link(R, "app", A, "anonymous")
    busy = store.fill(B, 3)  # a fill in progress has no row yet, and keeps its file
    index.add(B, 3, LAYER, "blob", 1.0)  # and a row for something in use stays too
    with store.reading(digests["busy"]):
        assert index.reconcile(store) == Reconciled(files_removed=2, rows_dropped=2)
    assert sorted(store.scan()) == sorted([(digests["kept"], 40), (digests["busy"], 40)])
    assert {e.digest for e in index.entries()} == {digests["kept"], B}
    assert index.linked(R, "app", A) is None
    busy.abort()
    assert index.reconcile(store) == Reconciled(files_removed=1, rows_dropped=1)
    assert list(store.scan()) == [(digests["kept"], 40)] and index.count() == 1


def test_two_connections_at_once(tmp_path, index):
    other = Index.open(tmp_path / "index.db")  # a second process's view of the same file
    try:
        index.add(A, 1, LAYER, "blob", 1.0)
        assert other.count() == 1
        errors: list[BaseException] = []

        def writer(idx: Index, start: int) -> None:
            try:
                for i in range(start, start + 100):
                    digest = f"sha256:{i:064x}"
                    idx.add(digest, 1, LAYER, "blob", float(i))
                    idx.link(R, "app", digest, "anonymous")
                    idx.touch_many([(digest, float(i + 1), 1), (A, float(i), 1)])
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=writer, args=(idx, start))
            for idx, start in ((index, 1000), (other, 2000), (index, 3000), (other, 4000))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert index.count() == other.count() == 401
        assert other.linked(R, "app", f"sha256:{1050:064x}") is not None
        assert [e.hits for e in index.entries() if e.digest == A] == [400]
    finally:
        other.close()


def test_lookups_do_not_wait_for_a_writer(tmp_path, index):
    index.add(A, 1, LAYER, "blob", 1.0)
    index.link(R, "app", A, "anonymous")
    writer = sqlite3.connect(tmp_path / "index.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM links")
    assert index.linked(R, "app", A) is not None  # the writer has not committed
    writer.execute("COMMIT")
    assert index.linked(R, "app", A) is None
    writer.close()


def test_a_second_process_writes_the_same_index_at_once(tmp_path, index):
    script = (
        "import sys; from regmirror.cache.index import Index\n"
        "index = Index.open(sys.argv[1])\n"
        "for i in range(200):\n"
        "    index.add(f'sha256:{i:064x}', 1, 'x', 'blob', float(i))\n"
        "index.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "addon")}
    child = subprocess.Popen([sys.executable, "-c", script, str(index.path)], env=env)
    try:
        for i in range(200):
            index.add(f"sha256:{i + 1000:064x}", 1, "x", "blob", float(i))
    finally:
        assert child.wait(timeout=30) == 0
    assert index.count() == 400

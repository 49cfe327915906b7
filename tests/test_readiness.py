import sqlite3

from regmirror.cache.index import Index
from regmirror.cache.store import Store
from regmirror.observe.readiness import Check, probe_cache, verdict


def test_a_writable_cache_is_ready_and_the_probe_leaves_nothing(tmp_path):
    store = Store.open(tmp_path)
    Index.open(tmp_path / "index.db").close()
    assert probe_cache(store.tmp, tmp_path / "index.db") == Check("cache", True, "writable")
    assert list(store.tmp.iterdir()) == []


def test_a_cache_directory_gone_is_not_ready(tmp_path):
    store = Store.open(tmp_path / "c")
    Index.open(tmp_path / "c" / "index.db").close()
    store.tmp.rmdir()
    check = probe_cache(store.tmp, tmp_path / "c" / "index.db")
    assert check == Check(
        "cache", False, "the cache directory cannot be written: No such file or directory"
    )


def test_an_index_locked_by_another_process_is_not_ready(tmp_path):
    store = Store.open(tmp_path)
    Index.open(tmp_path / "index.db").close()
    holder = sqlite3.connect(tmp_path / "index.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        check = probe_cache(store.tmp, tmp_path / "index.db")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert check == Check("cache", False, "the cache index cannot be written: database is locked")


def test_a_missing_index_is_not_ready_and_not_created(tmp_path):
    store = Store.open(tmp_path)
    check = probe_cache(store.tmp, tmp_path / "index.db")
    assert not check.ok and check.detail.startswith("the cache index cannot be written")
    assert not (tmp_path / "index.db").exists()


def test_verdict():
    ok, bad = Check("config", True, "loaded"), Check("cache", False, "full")
    assert verdict([ok]) == (
        200,
        {"ready": True, "checks": {"config": {"ok": True, "detail": "loaded"}}},
    )
    status, body = verdict([ok, bad])
    assert status == 503 and body["ready"] is False
    assert body["checks"]["cache"] == {"ok": False, "detail": "full"}

"""The cache command line's work on a cache directory, with the real index and files (the
end-to-end tests fill one through a mirror: test_e2e_cache_cli.py)."""

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from regmirror.cache.index import Index
from regmirror.cache.store import Store
from regmirror.cli import cachedir
from regmirror.cli.cachedir import CliError
from regmirror.cli.references import parse_reference

OCI = "application/vnd.oci.image.manifest.v1+json"
HUB = "docker.io"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Filled:
    """A cache directory holding images put in as the mirror would: file, then rows."""

    def __init__(self, root: Path) -> None:
        self.store = Store.open(root)
        self.index = Index.open(root / "index.db")
        self.now = 1000.0

    def put(self, repo: str, data: bytes, kind: str = "blob", media_type: str = "x") -> str:
        digest = sha(data)
        path = self.store.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.now += 1
        self.index.add(digest, len(data), media_type, kind, self.now)
        self.index.link(HUB, repo, digest, "anonymous")
        return digest

    def image(self, repo: str, tag: str, *blobs: bytes) -> tuple[str, list[str]]:
        digests = [self.put(repo, b) for b in blobs]
        desc = [
            {"mediaType": "x", "digest": d, "size": len(b)}
            for d, b in zip(digests, blobs, strict=True)
        ]
        body = json.dumps({"schemaVersion": 2, "config": desc[0], "layers": desc[1:]}).encode()
        manifest = self.put(repo, body, "manifest", OCI)
        self.index.set_tag(HUB, repo, tag, manifest, OCI, self.now)
        return manifest, digests


@pytest.fixture
def filled(tmp_path):
    f = Filled(tmp_path / "cache")
    yield f
    f.index.close()


def files(store: Store) -> set[str]:
    return {d for d, _ in store.scan()}


def test_opened_never_creates_a_cache(tmp_path):
    with (
        pytest.raises(CliError, match=f"no cache directory {tmp_path}/none"),
        cachedir.opened(str(tmp_path / "none")),
    ):
        pass
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    with (
        pytest.raises(CliError, match="is not a regmirror cache: it has no index.db"),
        cachedir.opened(str(tmp_path / "empty")),
    ):
        pass
    assert list((tmp_path / "empty").iterdir()) == []
    with (
        pytest.raises(CliError, match="an s3:// cache is not supported yet"),
        cachedir.opened("s3://bucket/prefix"),
    ):
        pass
    Store.open(tmp_path / "bad")
    (tmp_path / "bad" / "index.db").write_bytes(b"not a database" * 100)
    with (
        pytest.raises(CliError, match="index.db cannot be used"),
        cachedir.opened(str(tmp_path / "bad")),
    ):
        pass


def test_remove_purges_rows_then_files_and_keeps_what_another_image_shares(filled):
    base = b"base layer shared by both"
    testimg, (t_config, t_layer, shared) = filled.image(
        "library/testimg", "1", b"config t", b"layer t", base
    )
    app, (a_config, shared_too) = filled.image("library/app", "1", b"config a", base)
    assert shared == shared_too
    gone = {testimg, t_config, t_layer}
    size = sum(filled.store.size(d) or 0 for d in gone)
    with cachedir.opened(str(filled.store.root)) as (store, index):
        removed = cachedir.remove(store, index, parse_reference("testimg:1"))
    assert [str(i) for i in removed.images] == ["docker.io/library/testimg:1"]
    assert set(removed.purge.content) == gone
    assert removed.bytes == size
    assert files(filled.store) == {app, a_config, shared}
    assert {e.digest for e in filled.index.entries()} == {app, a_config, shared}
    assert filled.index.tag(HUB, "library/testimg", "1") is None
    assert filled.index.linked(HUB, "library/testimg", shared) is None  # not served for it
    assert filled.index.linked(HUB, "library/app", shared) is not None
    with (
        cachedir.opened(str(filled.store.root)) as (store, index),
        pytest.raises(CliError, match="docker.io/library/testimg:1 is not in the cache"),
    ):
        cachedir.remove(store, index, parse_reference("testimg:1"))


def test_a_refused_remove_changes_nothing(filled):
    manifest, _ = filled.image("library/testimg", "1", b"c", b"l")
    desc = {"mediaType": OCI, "digest": manifest, "size": filled.store.size(manifest)}
    body = json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()
    index_digest = filled.put("library/testimg", body, "manifest", "index")
    filled.index.set_tag(HUB, "library/testimg", "multi", index_digest, "index", filled.now)
    filled.index.drop_tag(HUB, "library/testimg", "1")  # the manifest is the index's only
    before = (files(filled.store), filled.index.entries(), filled.index.all_tags())
    with cachedir.opened(str(filled.store.root)) as (store, index):
        for ref, says in [
            ("testimg:1", "docker.io/library/testimg:1 is not in the cache"),
            (
                f"testimg@{manifest}",
                f"nothing removed: docker.io/library/testimg@{manifest} is part of "
                "docker.io/library/testimg:multi; remove that",
            ),
        ]:
            with pytest.raises(CliError, match=says):
                cachedir.remove(store, index, parse_reference(ref))
    assert (files(filled.store), filled.index.entries(), filled.index.all_tags()) == before


def test_verify_finds_bit_rot_under_an_unchanged_size_and_time_and_repair_drops_it(filled):
    manifest, (config, layer) = filled.image("library/testimg", "1", b"config", b"a layer")
    path = filled.store.path(layer)
    st = path.stat()
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(b"A")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    seen = []
    with cachedir.opened(str(filled.store.root)) as (store, index):
        checked, corrupt = cachedir.verify(
            store, index, False, lambda n, size: seen.append((n, size)), seen.append
        )
    assert checked == 3
    assert [(c.digest, c.path, c.size) for c in corrupt] == [(layer, path, 7)]
    assert seen[0] == (3, filled.index.total_size())
    assert path.exists() and filled.index.linked(HUB, "library/testimg", layer)

    with cachedir.opened(str(filled.store.root)) as (store, index):
        _, corrupt = cachedir.verify(store, index, True, lambda *_: None, lambda _: None)
        assert [c.digest for c in corrupt] == [layer]
        assert cachedir.verify(store, index, False, lambda *_: None, lambda _: None) == (2, [])
    assert not path.exists()
    assert {e.digest for e in filled.index.entries()} == {manifest, config}


def test_collect_evicts_the_least_recently_used_down_to_the_limit(filled):
    old = filled.put("library/a", b"o" * 4000)
    new = filled.put("library/a", b"n" * 4000)
    with cachedir.opened(str(filled.store.root)) as (store, index):
        with pytest.raises(CliError, match="--max-size: 'lots' is not a size"):
            cachedir.collect(store, index, "lots")
        assert cachedir.collect(store, index, "10k") == (10240, 8000, 8000, 0)
        assert cachedir.collect(store, index, "6k") == (6144, 8000, 4000, 1)
        # the mirror's default: far above 4000 bytes on any disk these tests run on
        assert cachedir.collect(store, index, "").evicted == 0
    assert files(filled.store) == {new} and not filled.store.has(old)


def test_snapshot_reads_manifests_only_as_their_digest_says(filled):
    manifest, _ = filled.image("library/testimg", "1", b"c", b"l")
    with cachedir.opened(str(filled.store.root)) as (store, index):
        assert set(cachedir.snapshot(store, index, {}).manifests) == {manifest}
        filled.store.path(manifest).write_bytes(b'{"schemaVersion": 2, "config": {}}')
        cached = cachedir.snapshot(store, index, {})
    assert cached.manifests == {}  # a corrupted manifest tells nothing of what it references
    assert manifest in cached.content


# ------------------------------------------------------------------------------------------
# the index's part: one write transaction for a second process
# ------------------------------------------------------------------------------------------


def test_writing_is_one_transaction_that_other_connections_see_whole_or_not_at_all(filled):
    manifest, (config, layer) = filled.image("library/testimg", "1", b"c", b"l")
    other = sqlite3.connect(filled.store.root / "index.db")
    with filled.index.writing():
        filled.index.drop_tag(HUB, "library/testimg", "1")
        filled.index.unlink([(HUB, "library/testimg", layer)])
        filled.index.remove([config])  # joins the transaction: no BEGIN of its own
        assert other.execute("SELECT count(*) FROM tags").fetchone() == (1,)
    assert other.execute("SELECT count(*) FROM tags").fetchone() == (0,)
    assert filled.index.all_links() == [(HUB, "library/testimg", manifest)]
    with pytest.raises(RuntimeError), filled.index.writing():
        filled.index.remove([manifest])
        raise RuntimeError
    assert [e.digest for e in filled.index.entries()] == [layer, manifest]  # rolled back
    other.close()

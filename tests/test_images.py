import hashlib
import json
import sqlite3

import pytest
from regmirror.cache.index import Index
from regmirror.cache.store import Store
from regmirror.observe.images import (
    CachedImage,
    References,
    filter_key,
    image_size,
    read_cache,
    references,
    select,
)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def d(c: str) -> str:
    return "sha256:" + c * 64


def test_references_of_every_kind_of_manifest():
    oci = {"config": {"digest": d("c")}, "layers": [{"digest": d("1")}, {"digest": d("2")}]}
    assert references(json.dumps(oci).encode()) == [d("c"), d("1"), d("2")]
    index = {"manifests": [{"digest": d("a")}, {"digest": d("b")}]}
    assert references(json.dumps(index).encode()) == [d("a"), d("b")]
    schema1 = {"fsLayers": [{"blobSum": d("3")}]}
    assert references(json.dumps(schema1).encode()) == [d("3")]
    odd = {"layers": "x", "manifests": [1, {"digest": 5}], "config": []}
    for body in (b"not json", b"[1]", json.dumps(odd).encode()):
        assert references(body) == []


def test_image_size_counts_what_is_cached_once():
    refs = {d("i"): [d("a"), d("b"), d("x")], d("a"): [d("c"), d("1")], d("b"): [d("c"), d("1")]}
    sizes = {d("i"): 1, d("a"): 10, d("b"): 100, d("c"): 1000, d("1"): 10000}
    # platforms a and b share their config and layer; x is not cached
    assert image_size(d("i"), sizes, lambda g: refs.get(g, [])) == 11111
    assert image_size(d("a"), sizes, lambda g: refs.get(g, [])) == 11010
    assert image_size(d("z"), sizes, lambda g: refs.get(g, [])) == 0
    loop = {d("a"): [d("b")], d("b"): [d("a")]}
    assert image_size(d("a"), sizes, lambda g: loop.get(g, [])) == 110


def image(name: str, tag: str, size: int, pulled: float, pulls: int) -> CachedImage:
    return CachedImage("docker.io", name, tag, d(name[0]), size, pulled, pulls)


def test_select_filters_sorts_and_cuts():
    a, b, c = (
        image("alpine", "3", 5, 30, 1),
        image("busybox", "1", 9, 10, 7),
        image("nginx", "1", 1, 20, 3),
    )
    images = [a, b, c]
    assert select(images, "", "pulled", 10) == ([a, c, b], 3)
    assert select(images, "", "size", 10) == ([b, a, c], 3)
    assert select(images, "", "pulls", 10) == ([b, c, a], 3)
    assert select(images, "", "image", 10) == ([a, b, c], 3)
    assert select(images, "", "nonsense", 10) == ([a, c, b], 3)  # the default
    assert select(images, " NGINX ", "pulled", 10) == ([c], 1)
    assert select(images, ":1", "image", 10) == ([b, c], 2)
    assert select(images, d("b")[:20], "image", 10) == ([b], 1)  # by digest
    assert select(images, "", "size", 2) == ([b, a], 3)
    assert filter_key(a) == f"docker.io/alpine:3 {d('a')}"


@pytest.fixture
def cache(tmp_path):
    store = Store.open(tmp_path)
    index = Index.open(tmp_path / "index.db")
    yield store, index
    index.close()


def put(store: Store, index: Index, body: bytes, kind: str, now: float) -> str:
    g = digest(body)
    path = store.path(g)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    index.add(g, len(body), "application/json", kind, now)
    return g


def test_read_cache_lists_tags_with_their_sizes_and_use(cache, tmp_path):
    store, index = cache
    layer, config = b"L" * 1000, b'{"config": 1}'
    lg, cg = put(store, index, layer, "blob", 100), put(store, index, config, "blob", 100)
    manifest = json.dumps({"config": {"digest": cg}, "layers": [{"digest": lg}]}).encode()
    mg = put(store, index, manifest, "manifest", 100)
    top = json.dumps({"manifests": [{"digest": mg}, {"digest": d("f")}]}).encode()
    tg = put(store, index, top, "manifest", 100)
    index.set_tag("docker.io", "library/multi", "1", tg, "application/json", 150)
    index.set_tag("docker.io", "library/multi", "latest", tg, "application/json", 90)
    index.set_tag("ghcr.io", "org/app", "v1", mg, "application/json", 50)
    index.touch_many([(tg, 200, 4)])
    put(store, index, b"unrelated", "blob", 100)
    refs = References(store)
    contents = read_cache(tmp_path / "index.db", refs)
    whole = len(layer) + len(config) + len(manifest)
    assert contents.entries == 5
    assert contents.size == whole + len(top) + len(b"unrelated")
    by_name = {i.name: i for i in contents.images}
    assert set(by_name) == {"docker.io/library/multi:1", "docker.io/library/multi:latest",
                            "ghcr.io/org/app:v1"}  # fmt: skip
    multi = by_name["docker.io/library/multi:1"]
    assert (multi.digest, multi.size, multi.last_pulled, multi.pulls) == (
        tg,
        whole + len(top),
        200,
        5,
    )
    app = by_name["ghcr.io/org/app:v1"]
    assert (app.size, app.last_pulled, app.pulls) == (whole, 100, 1)
    # manifests are read once; a manifest file gone meanwhile counts without what it names
    store.path(mg).unlink()
    assert read_cache(tmp_path / "index.db", refs).images == contents.images
    assert References(store)(mg) == []


def test_read_cache_never_creates_an_index(tmp_path):
    with pytest.raises(sqlite3.Error):
        read_cache(tmp_path / "none.db", References(Store(tmp_path)))
    assert not (tmp_path / "none.db").exists()

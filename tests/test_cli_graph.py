import hashlib
import json

import pytest
from regmirror.cache.index import Entry, Tag
from regmirror.cli.graph import (
    Cached,
    Descriptor,
    Image,
    Manifest,
    closure,
    describe,
    find,
    images,
    parse_manifest,
    purge,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HUB = "docker.io"


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def manifest_body(config: str, *layers: str) -> bytes:
    d = {"mediaType": "application/octet-stream", "size": 10}
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {**d, "digest": digest(config)},
            "layers": [{**d, "digest": digest(layer)} for layer in layers],
            "subject": {**d, "mediaType": OCI_MANIFEST, "digest": digest("described")},
        }
    ).encode()


def index_body(**platforms: str) -> bytes:
    manifests = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest(name),
            "size": 500,
            "platform": dict(zip(("os", "architecture", "variant"), p.split("/"), strict=False)),
        }
        for p, name in platforms.items()
    ]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()


# ------------------------------------------------------------------------------------------
# parsing manifests
# ------------------------------------------------------------------------------------------


def test_a_manifest_references_its_config_then_its_layers_never_its_subject():
    m = parse_manifest(manifest_body("c", "l1", "l2"))
    assert m == Manifest(False, tuple(Descriptor(digest(n), 10) for n in ("c", "l1", "l2")))


def test_an_index_references_its_platform_manifests():
    m = parse_manifest(index_body(**{"linux/amd64": "m1", "linux/arm/v7": "m2"}))
    assert m == Manifest(
        True,
        (
            Descriptor(digest("m1"), 500, "linux/amd64"),
            Descriptor(digest("m2"), 500, "linux/arm/v7"),
        ),
    )


def test_a_schema1_manifest_references_its_blobs_once():
    body = json.dumps(
        {
            "schemaVersion": 1,
            "fsLayers": [
                {"blobSum": digest("a")},
                {"blobSum": digest("empty")},
                {"blobSum": digest("empty")},
            ],
        }
    ).encode()
    assert parse_manifest(body).children == tuple(
        Descriptor(digest(n), None) for n in ("a", "empty")
    )


@pytest.mark.parametrize(
    "body, says",
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schemaVersion": 2}', "neither"),
        (b'{"manifests": {}}', "manifests is not a list"),
        (b'{"manifests": [1]}', "not a JSON object"),
        (b'{"config": {"digest": "sha256:zz", "size": 1}}', "malformed digest"),
        (json.dumps({"config": {"digest": digest("c"), "size": -1}}).encode(), "no valid size"),
        (json.dumps({"config": {"digest": digest("c"), "size": True}}).encode(), "no valid size"),
        (json.dumps({"config": {"digest": digest("c")}}).encode(), "no valid size"),
        (b'{"fsLayers": [{"blobSum": 3}]}', "malformed digest"),
    ],
)
def test_what_is_no_manifest_is_refused(body, says):
    with pytest.raises(ValueError, match=says):
        parse_manifest(body)


# ------------------------------------------------------------------------------------------
# a cache: multi (index, arm64 not cached), testimg (two tags, an old untagged manifest),
# org/app; the layer "shared" is in all three
# ------------------------------------------------------------------------------------------

BODIES = {
    "multi-index": (index_body(**{"linux/amd64": "m-amd64", "linux/arm64": "m-arm64"}), "multi"),
    "m-amd64": (manifest_body("c-amd64", "l-amd64", "shared"), "multi"),
    "testimg": (manifest_body("c-test", "l-test", "shared"), "testimg"),
    "testimg-old": (manifest_body("c-old", "l-test"), "testimg"),
    "app": (manifest_body("c-app", "shared"), "app"),
}
BLOBS = {
    "c-amd64": ["multi"],
    "l-amd64": ["multi"],
    "c-test": ["testimg"],
    "l-test": ["testimg"],
    "c-old": ["testimg"],
    "c-app": ["app"],
    "shared": ["multi", "testimg", "app"],
}
REPOS = {
    "multi": (HUB, "library/multi"),
    "testimg": (HUB, "library/testimg"),
    "app": ("ghcr.io", "org/app"),
}


def cache() -> Cached:
    content, links, manifests = {}, set(), {}
    for n, (name, (body, repo)) in enumerate(BODIES.items()):
        content[digest(name)] = Entry(
            digest(name), len(body), OCI_MANIFEST, "manifest", 1, 100 + n, 0
        )
        content[digest(name)] = content[digest(name)]._replace(
            media_type=OCI_INDEX if name == "multi-index" else OCI_MANIFEST
        )
        links.add((*REPOS[repo], digest(name)))
        manifests[digest(name)] = parse_manifest(body)
    for n, (name, repos) in enumerate(BLOBS.items()):
        content[digest(name)] = Entry(
            digest(name), 1000, "application/octet-stream", "blob", 1, 200 + n, 0
        )
        links |= {(*REPOS[r], digest(name)) for r in repos}
    tags = [
        Tag(HUB, "library/multi", "1", digest("multi-index"), OCI_INDEX, 50.0),
        Tag(HUB, "library/testimg", "1", digest("testimg"), OCI_MANIFEST, 60.0),
        Tag(HUB, "library/testimg", "latest", digest("testimg"), OCI_MANIFEST, 61.0),
        Tag("ghcr.io", "org/app", "1", digest("app"), OCI_MANIFEST, 70.0),
    ]
    return Cached(content, frozenset(links), tags, manifests)


MULTI = Image(HUB, "library/multi", "1", digest("multi-index"))
TEST1 = Image(HUB, "library/testimg", "1", digest("testimg"))
TEST_LATEST = Image(HUB, "library/testimg", "latest", digest("testimg"))
TEST_OLD = Image(HUB, "library/testimg", "", digest("testimg-old"))
APP = Image("ghcr.io", "org/app", "1", digest("app"))


def d(*names: str) -> list[str]:
    return sorted(digest(n) for n in names)


def test_the_images_are_the_tags_and_the_manifests_nothing_points_at():
    assert images(cache()) == sorted([MULTI, TEST1, TEST_LATEST, TEST_OLD, APP])
    assert str(TEST1) == "docker.io/library/testimg:1"
    assert str(TEST_OLD) == f"docker.io/library/testimg@{digest('testimg-old')}"


def test_a_manifest_whose_file_cannot_be_read_is_still_an_image():
    c = cache()
    c = c._replace(manifests={k: v for k, v in c.manifests.items() if k != digest("multi-index")})
    # unreadable, the index no longer tells that m-amd64 is one of its platforms
    assert Image(HUB, "library/multi", "", digest("m-amd64")) in images(c)
    assert describe(c, MULTI).complete is False


def test_closure_follows_an_index_to_its_layers_and_stops_at_what_is_not_cached():
    reached = closure(cache(), digest("multi-index"))
    assert reached == set(d("multi-index", "m-amd64", "m-arm64", "c-amd64", "l-amd64", "shared"))


def test_describe_sizes_what_is_cached_and_says_what_is_missing():
    c = cache()
    multi = describe(c, MULTI)
    index_size, amd64_size = (len(BODIES[n][0]) for n in ("multi-index", "m-amd64"))
    assert multi.size == index_size + amd64_size + 3 * 1000
    assert multi.complete is False  # the arm64 manifest was never pulled
    assert multi.platforms == (
        ("linux/amd64", digest("m-amd64"), True),
        ("linux/arm64", digest("m-arm64"), False),
    )
    assert multi.media_type == OCI_INDEX
    assert multi.validated == 50.0
    assert multi.last_used == 206  # its latest part: the shared layer
    assert describe(c, TEST_OLD).last_used == 204  # c-old; the shared layer is not its
    app = describe(c, APP)
    assert (app.size, app.complete, app.platforms) == (len(BODIES["app"][0]) + 2000, True, ())
    assert describe(c, TEST_LATEST).validated == 61.0
    assert describe(c, TEST_OLD).validated is None


def test_find_names_a_tag_or_every_image_of_a_digest_in_its_repository():
    c = cache()
    assert find(c, HUB, "library/testimg", "1", "") == [TEST1]
    assert find(c, HUB, "library/testimg", "", digest("testimg")) == [TEST1, TEST_LATEST]
    assert find(c, HUB, "library/testimg", "", digest("testimg-old")) == [TEST_OLD]
    assert find(c, HUB, "library/multi", "", digest("m-amd64")) == [
        Image(HUB, "library/multi", "", digest("m-amd64"))
    ]  # a platform manifest, by digest
    assert find(c, HUB, "library/testimg", "2", "") == []
    assert find(c, HUB, "library/other", "", digest("testimg")) == []  # not linked there


# ------------------------------------------------------------------------------------------
# what purging removes
# ------------------------------------------------------------------------------------------


def test_a_tag_whose_manifest_another_tag_points_at_goes_alone():
    p = purge(cache(), [TEST1])
    assert p.tags == [(HUB, "library/testimg", "1")]
    assert (p.content, p.links) == ([], [])
    assert p.shared == d("testimg", "c-test", "l-test", "shared")
    assert p.users == [TEST_LATEST] and not p.nothing


def test_an_image_takes_what_no_other_image_uses_and_its_links_to_what_they_share():
    p = purge(cache(), [MULTI])
    assert p.tags == [(HUB, "library/multi", "1")]
    assert p.content == d("multi-index", "m-amd64", "c-amd64", "l-amd64")
    assert p.shared == d("shared")
    assert p.links == [(HUB, "library/multi", digest("shared"))]  # no longer served for multi
    assert p.users == []  # what others share is a layer, not multi's index


def test_a_digest_purges_every_tag_of_it_and_keeps_what_the_repositorys_other_images_use():
    p = purge(cache(), find(cache(), HUB, "library/testimg", "", digest("testimg")))
    assert p.tags == [(HUB, "library/testimg", "1"), (HUB, "library/testimg", "latest")]
    assert p.content == d("testimg", "c-test")
    # l-test: the old manifest of the same repository uses it, so it stays served there;
    # shared: other repositories use it, testimg's old manifest does not
    assert p.shared == d("l-test", "shared")
    assert p.links == [(HUB, "library/testimg", digest("shared"))]


def test_a_platform_manifest_an_index_still_references_stays():
    c = cache()
    p = purge(c, find(c, HUB, "library/multi", "", digest("m-amd64")))
    assert p == ([], [], [], d("m-amd64", "c-amd64", "l-amd64", "shared"), [MULTI])
    assert p.nothing


def test_purging_everything_leaves_nothing():
    c = cache()
    p = purge(c, images(c))
    assert len(p.tags) == len(c.tags)
    reached = {x for i in images(c) for x in closure(c, i.digest)}
    assert p.content == sorted(reached & c.content.keys())
    assert (p.links, p.shared, p.users) == ([], [], [])

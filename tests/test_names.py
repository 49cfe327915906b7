import pytest
from regmirror.routing import names
from regmirror.routing.names import ApiPath, InvalidRequest, parse_api_path

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/v2/", ApiPath("ping")),
        ("/v2", ApiPath("ping")),
        ("/v2/auth", ApiPath("token")),
        ("/v2/_catalog", ApiPath("catalog")),
        ("/v2/nginx/manifests/1-alpine", ApiPath("manifest", "nginx", "1-alpine")),
        ("/v2/library/nginx/manifests/" + D, ApiPath("manifest", "library/nginx", D)),
        ("/v2/a/b/c/blobs/" + D, ApiPath("blob", "a/b/c", D)),
        ("/v2/nginx/tags/list", ApiPath("tags", "nginx")),
        ("/v2/org/app/referrers/" + D, ApiPath("referrers", "org/app", D)),
        ("/v2/org/app/blobs/uploads/", ApiPath("upload", "org/app")),
        ("/v2/org/app/blobs/uploads/123-abc", ApiPath("upload", "org/app")),
        ("/v2/a__b/x.y-z/manifests/v1.0_rc", ApiPath("manifest", "a__b/x.y-z", "v1.0_rc")),
        # a name may contain an endpoint word
        ("/v2/a/manifests/b/manifests/1", ApiPath("manifest", "a/manifests/b", "1")),
    ],
)
def test_parse_api_path(path, expected):
    assert parse_api_path(path) == expected


@pytest.mark.parametrize("path", ["/", "/v2/nginx", "/v2/nginx/whatever/x", "/favicon.ico"])
def test_not_an_endpoint(path):
    assert parse_api_path(path) is None


@pytest.mark.parametrize(
    "path,code",
    [
        ("/v2/../etc/manifests/latest", "NAME_INVALID"),
        ("/v2/a/../b/manifests/latest", "NAME_INVALID"),
        ("/v2/Nginx/manifests/latest", "NAME_INVALID"),
        ("/v2/nginx%2f/manifests/latest", "NAME_INVALID"),
        ("/v2/ngi\x00nx/manifests/latest", "NAME_INVALID"),
        ("/v2/a//b/manifests/latest", "NAME_INVALID"),
        ("/v2/" + "a" * 256 + "/manifests/latest", "NAME_INVALID"),
        ("/v2/" + "a/" * 3000 + "b/manifests/latest", "NAME_INVALID"),
        ("/v2/nginx/manifests/.hidden", "TAG_INVALID"),
        ("/v2/nginx/manifests/" + "t" * 129, "TAG_INVALID"),
        ("/v2/nginx/manifests/lat%00est", "TAG_INVALID"),
        ("/v2/nginx/manifests/sha256:abc", "DIGEST_INVALID"),
        ("/v2/nginx/blobs/latest", "DIGEST_INVALID"),
        ("/v2/nginx/blobs/sha256:" + "A" * 64, "DIGEST_INVALID"),
    ],
)
def test_invalid(path, code):
    with pytest.raises(InvalidRequest) as e:
        parse_api_path(path)
    assert e.value.code == code


def test_digests():
    assert names.valid_digest(D)
    assert names.valid_digest("sha512:" + "b" * 128)
    assert not names.valid_digest("sha512:" + "b" * 64)
    assert names.valid_digest("blake3:abcDEF=_-")
    assert not names.valid_digest("sha256:" + "a" * 63)


def test_with_library():
    assert names.with_library("nginx") == "library/nginx"
    assert names.with_library("library/nginx") == "library/nginx"
    assert names.with_library("bitnami/redis") == "bitnami/redis"


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from regmirror import errors

from tests.strategies import digests, props, references, repo_names, tags, wild_text

_ENDPOINT_WORDS = ("manifests", "blobs", "uploads", "tags", "list", "referrers", "", "..", ".")
# Paths that look like the API, so that the endpoint branches are reached.
api_like_paths = st.lists(
    st.one_of(st.sampled_from(_ENDPOINT_WORDS), repo_names, references, wild_text), max_size=6
).map(lambda parts: "/v2/" + "/".join(parts))


@props(150)
@given(st.one_of(wild_text, api_like_paths))
@example("/v2/" + "a/" * 2100 + "manifests/1")
def test_prop_parse_api_path_classifies_or_refuses(path):
    try:
        parsed = parse_api_path(path)
    except InvalidRequest as e:
        assert e.code in (errors.NAME_INVALID, errors.TAG_INVALID, errors.DIGEST_INVALID)
        return
    if parsed is None:
        return
    assert parsed.kind in names.API_KINDS | {names.TOKEN, names.UPLOAD}
    if parsed.name:
        assert names.valid_name(parsed.name)
    if parsed.reference:
        assert names.valid_tag(parsed.reference) or names.valid_digest(parsed.reference)


@props(60)
@given(repo_names, references)
@example("a/blobs/uploads", "1")  # a repository may be called so: distribution routes it
def test_prop_manifest_paths_round_trip(name, ref):
    assert names.valid_name(name)
    assert parse_api_path(f"/v2/{name}/manifests/{ref}") == ApiPath(names.MANIFEST, name, ref)


@props(30)
@given(repo_names, digests, st.sampled_from(["blobs", "referrers"]))
def test_prop_blob_and_referrer_paths_round_trip(name, digest, kind):
    expected = ApiPath(names.BLOB if kind == "blobs" else names.REFERRERS, name, digest)
    assert parse_api_path(f"/v2/{name}/{kind}/{digest}") == expected


@props(30)
@given(repo_names)
def test_prop_tag_list_and_upload_paths_round_trip(name):
    assert parse_api_path(f"/v2/{name}/tags/list") == ApiPath(names.TAGS, name)
    assert parse_api_path(f"/v2/{name}/blobs/uploads/") == ApiPath(names.UPLOAD, name)


@props(100)
@given(tags)
def test_prop_tags_are_not_digests(tag):
    assert names.valid_tag(tag) and not names.valid_digest(tag)


@props(50)
@given(st.one_of(repo_names, wild_text))
def test_prop_with_library_is_idempotent(name):
    once = names.with_library(name)
    assert names.with_library(once) == once
    assert once.endswith(name)

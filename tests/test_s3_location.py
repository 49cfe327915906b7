import pytest
from hypothesis import given
from hypothesis import strategies as st
from regmirror.cache.s3 import location
from regmirror.cache.s3.location import S3Location

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "url, bucket, prefix",
    [
        ("s3://cache", "cache", ""),
        ("s3://cache/", "cache", ""),
        ("s3://my.cache-1/regmirror", "my.cache-1", "regmirror/"),
        ("s3://cache/a/b/", "cache", "a/b/"),
    ],
)
def test_urls_name_a_bucket_and_a_prefix(url, bucket, prefix):
    assert location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    "url, said",
    [
        ("/var/cache", "not an s3:// URL"),
        ("s3://", "not an S3 bucket name"),
        ("s3://ab", "not an S3 bucket name"),
        ("s3://Cache", "not an S3 bucket name"),
        ("s3://a..b", "not an S3 bucket name"),
        ("s3://cache/a//b", "empty, '.' or '..'"),
        ("s3://cache/a/../b", "empty, '.' or '..'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, said):
    with pytest.raises(ValueError, match=said.replace(".", r"\.").replace("(", r"\(")):
        location.parse(url)


def test_keys_of_each_kind_never_read_as_another():
    where = S3Location("b", "p/")
    assert where.blob(DIGEST) == "p/blobs/sha256/" + "ab" * 32
    assert where.digest_of(where.blob(DIGEST)) == DIGEST
    assert where.link("docker.io", "library/x", DIGEST) == f"p/links/{DIGEST}/docker.io/library/x"
    assert where.link("docker.io", "x", DIGEST).startswith(where.links(DIGEST))
    assert where.tag("127.0.0.1:5000", "a/b", "1") == "p/tags/127.0.0.1:5000/a/b/1"
    assert where.access_batch(12.5, "r1") == "p/access/0000000012500-r1.json"
    for key in (
        where.link("docker.io", "x", DIGEST),
        where.tag("r", "x", "1"),
        where.lease,
        "p/blobs/sha256/short",
        "p/blobs/md5/" + "ab" * 16,
        "q/blobs/sha256/" + "ab" * 32,
    ):
        assert where.digest_of(key) is None  # fmt: skip


@given(st.text(max_size=80))
def test_parsing_never_raises_anything_but_value_error(url):
    try:
        where = location.parse(url)
    except ValueError:
        return
    assert url.startswith("s3://") and (where.prefix == "" or where.prefix.endswith("/"))

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from regmirror.cache.blob_urls import (
    TTL,
    Blob,
    default_base,
    parse_base_url,
    parse_listen,
    sign,
    verify,
)
from regmirror.transport import signing

KEY = b"k" * 32
DIGEST = "sha256:" + "a" * 64
BLOB = Blob(DIGEST, "docker.io", "library/nginx", "https://registry-1.docker.io",
            "application/vnd.oci.image.layer.v1.tar+gzip", 27_100_000)  # fmt: skip


def split(path: str) -> tuple[str, str]:
    target, _, query = path.partition("?")
    assert target.startswith("/blobs/")
    return target.removeprefix("/blobs/"), query


def test_sign_verify():
    digest, query = split(sign(BLOB, KEY, now=1000))
    assert digest == DIGEST
    assert verify(digest, query, KEY, now=1000) == BLOB
    assert verify(digest, query, KEY, now=1000 + TTL) == BLOB
    assert TTL <= 60  # short: clients follow a 307 at once
    with pytest.raises(ValueError, match="expired"):
        verify(digest, query, KEY, now=1001 + TTL)
    with pytest.raises(ValueError, match="signature"):
        verify(digest, query, b"other" * 8, now=1000)
    with pytest.raises(ValueError, match="signature"):  # the digest is bound
        verify("sha256:" + "b" * 64, query, KEY, now=1000)


def test_no_field_can_be_changed():
    digest, query = split(sign(BLOB, KEY, now=1000))
    for field, value in (("r", "lab.example"), ("n", "private/secret"), ("u", "http://x"),
                         ("t", "text/html"), ("l", "1"), ("l", "027100000"), ("e", "99999999999"),
                         ("e", "0" + str(1000 + TTL))):  # fmt: skip
        forged = dict(urllib.parse.parse_qsl(query), **{field: value})
        with pytest.raises(ValueError, match="signature"):
            verify(digest, urllib.parse.urlencode(forged), KEY, now=1000)


def test_incomplete_urls_are_refused():
    for q in ("", "r=docker.io", "r=d&n=a&l=1&e=x&s=y", "r=d&n=a&l=-1&e=1&s=y",
              "r=d&n=a&l=%D9%A1&e=1&s=y", "n=a&l=1&e=1&s=y", "r=d&l=1&e=1&s=y"):  # fmt: skip
        with pytest.raises(ValueError, match="incomplete"):
            verify(DIGEST, q, KEY, now=0)


def test_a_redirect_signature_is_no_blob_signature():
    """Both kinds share the HMAC and its secret: neither's signature opens the other."""
    origin = signing.Origin("https://cdn.example/x", "docker.io", "blob", "library/nginx",
                            DIGEST)  # fmt: skip
    redirect = dict(urllib.parse.parse_qsl(signing.sign(origin, KEY, 0).partition("?")[2]))
    _, query = split(sign(BLOB, KEY, now=0))
    as_blob = dict(urllib.parse.parse_qsl(query), s=redirect["s"], e=redirect["e"])
    with pytest.raises(ValueError, match="signature"):
        verify(DIGEST, urllib.parse.urlencode(as_blob), KEY, now=0)
    blob = dict(urllib.parse.parse_qsl(query))
    with pytest.raises(ValueError, match="signature"):
        signing.verify(urllib.parse.urlencode(redirect | {"s": blob["s"]}), KEY, now=0)


@given(
    name=st.text(min_size=1, max_size=40),
    media_type=st.text(max_size=40),
    size=st.integers(min_value=0, max_value=1 << 50),
)
def test_any_blob_round_trips(name, media_type, size):
    blob = BLOB._replace(name=name, media_type=media_type, size=size)
    digest, query = split(sign(blob, KEY, now=0))
    assert verify(digest, query, KEY, now=0) == blob


def test_parse_listen():
    assert parse_listen("") is None and parse_listen("  ") is None
    assert parse_listen("5001") == ("", 5001)
    assert parse_listen(":5001") == ("", 5001)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("blobs.example:5001") == ("blobs.example", 5001)
    assert parse_listen("[::1]:5001") == ("::1", 5001)
    for bad in ("x", "5001x", "65536", "127.0.0.1:", "::1:5001", "[x]:1", "a b:1", "-1",
                "127.0.0.1:٥٠٠١"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_parse_base_url():
    assert parse_base_url("") == ""
    assert parse_base_url("https://blobs.example") == "https://blobs.example"
    assert parse_base_url("http://10.0.0.5:5001/") == "http://10.0.0.5:5001"
    assert parse_base_url("https://[2001:db8::1]:8443") == "https://[2001:db8::1]:8443"
    for bad in ("blobs.example", "ftp://blobs.example", "https://", "https://a/b",
                "https://a?x=1", "https://a#f", "https://u@a", "https://a b",
                "https://a:99999"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_base_url(bad)


def test_default_base_is_the_clients_scheme_and_host_with_the_data_planes_port():
    assert default_base("http://127.0.0.1:5000", 5001) == "http://127.0.0.1:5001"
    assert default_base("https://mirror.example", 5001) == "https://mirror.example:5001"
    assert default_base("https://[::1]:5000", 5001) == "https://[::1]:5001"

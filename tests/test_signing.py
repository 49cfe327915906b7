import urllib.parse

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from regmirror.transport.signing import TTL, Origin, Signer, sign, verify

from tests.strategies import any_char, escaped_text, mitm_text, props, wild_text

KEY = b"k" * 32
CDN = (
    "https://production.cloudflare.docker.com/registry-v2/blobs/sha256/ab/x/data?X-Amz-Signature=s"
)
ORIGIN = Origin(CDN, "docker.io", "blob", "library/nginx", "sha256:" + "a" * 64)


def test_sign_verify():
    path = sign(ORIGIN, KEY, now=1000)
    assert path.startswith("/_regmirror/redirect?")
    query = path.split("?", 1)[1]
    assert verify(query, KEY, now=1000) == ORIGIN
    assert verify(query, KEY, now=1600) == ORIGIN
    with pytest.raises(ValueError, match="expired"):
        verify(query, KEY, now=1601)
    with pytest.raises(ValueError, match="signature"):
        verify(query, b"other" * 8, now=1000)
    # no field can be changed: the target, its registry (whose redirect policy judges the
    # target), the operation, repository and reference (the route the redirect restores)
    for field, value in (("u", "http://169.254.169.254/latest/meta-data"), ("e", "99999999999"),
                         ("r", "lab.example"), ("k", "manifest"), ("n", "private/secret"),
                         ("d", "sha256:" + "b" * 64), ("e", "01600")):  # fmt: skip
        forged = dict(urllib.parse.parse_qsl(query), **{field: value})
        with pytest.raises(ValueError, match="signature"):
            verify(urllib.parse.urlencode(forged), KEY, now=1000)
    for q in ("", "u=x", "u=x&e=1", "u=x&r=docker.io&e=abc&s=y", "u=x&e=1&s=y",
              "u=x&r=d&e=1&s=%C3%A9", "u=%FF&r=d&e=1&s=\udcff",
              "u=x&r=d&e=%D9%A1&s=y"):  # fmt: skip
        with pytest.raises(ValueError):
            verify(q, KEY, now=1000)


def test_targets_of_any_bytes_round_trip():
    for target in ("https://cdn.example/é?a=%FF", "https://cdn.example/\udcff"):
        origin = ORIGIN._replace(target=target)
        assert verify(sign(origin, KEY, now=0).split("?", 1)[1], KEY, now=0) == origin


def test_signer_holds_the_key():
    a, b = Signer(), Signer()
    assert a.key != b.key
    query = a.sign(ORIGIN, 0).split("?", 1)[1]
    assert a.verify(query, 0) == ORIGIN
    with pytest.raises(ValueError):
        b.verify(query, 0)


# --- Properties (hypothesis) -------------------------------------------------------------

# Locations as mitmproxy has them, resolved against the request (never empty).
targets = st.one_of(
    st.builds("https://cdn.example/{}".format, mitm_text), st.just(CDN), mitm_text.filter(bool)
)
keys = st.binary(max_size=64)
times = st.floats(0, 4e9)


def _query(target: str, key: bytes, now: float) -> str:
    return sign(ORIGIN._replace(target=target), key, now).partition("?")[2]


@props(200)
@given(targets, keys, times)
@example("https://cdn.example/\udcff", KEY, 0)  # a Location that is not UTF-8, as mitmproxy has it
def test_prop_verify_gives_back_what_sign_signed(target, key, now):
    query = _query(target, key, now)
    assert verify(query, key, now) == ORIGIN._replace(target=target)
    assert verify(query, key, int(now) + TTL) == ORIGIN._replace(target=target)


@props(100)
@given(targets, keys, times, st.floats(1, 1e9))
def test_prop_a_signed_redirect_expires(target, key, now, late):
    with pytest.raises(ValueError, match="expired"):
        verify(_query(target, key, now), key, int(now) + TTL + late)


_mutations = st.tuples(st.integers(0, 10**6), any_char, st.sampled_from(["replace", "insert",
                                                                         "delete"]))  # fmt: skip


@props(200)
@given(targets, _mutations)
@example("https://cdn.example/x", (34, "۱", "replace"))  # e=1600 -> e=۱600 (a Unicode digit)
@example("https://cdn.example/x", (34, "0", "insert"))  # e=1600 -> e=01600
@example("https://cdn.example/x", (40, "\x80", "replace"))  # a non-ASCII signature
def test_prop_a_changed_query_does_not_verify(target, mutation):
    """Any change of one character either leaves the decoded parameters as they were (`+` for
    a space, `%2f` for `%2F`) or makes verify refuse the query."""
    query = _query(target, KEY, 1000)
    at, char, how = mutation
    at %= len(query)
    changed = {
        "replace": query[:at] + char + query[at + 1 :],
        "insert": query[:at] + char + query[at:],
        "delete": query[:at] + query[at + 1 :],
    }[how]
    decoded = dict(urllib.parse.parse_qsl(query, errors="surrogateescape"))
    if dict(urllib.parse.parse_qsl(changed, errors="surrogateescape")) == decoded:
        return
    with pytest.raises(ValueError):
        verify(changed, KEY, 1000)


_garbage = st.lists(
    st.sampled_from(["u=", "e=", "s=", "&", "%", "%FF", "%C3", "%zz", "+", "1", "=", "%00"])
    | st.text(any_char, max_size=3),
    max_size=12,
).map("".join)


@props(150)
@given(st.one_of(_garbage, wild_text, escaped_text), keys)
@example("u=x&r=d&e=1&s=%C3%A9", KEY)  # a non-ASCII signature
@example("u=x&r=d&e=1&s=\udcff", KEY)
@example("u=x&r=d&e=²&s=x", KEY)
def test_prop_verify_raises_only_value_error(query, key):
    try:
        target = verify(query, key, 1000)
    except ValueError:
        return
    raise AssertionError(f"forged query verified: {target!r}")

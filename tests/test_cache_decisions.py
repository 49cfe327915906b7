from types import SimpleNamespace as E

import pytest
from regmirror.cache.decisions import (
    acceptable,
    default_max_size,
    evict,
    may_read,
    parse_size,
    revalidation,
    stale_usable,
    tag_fresh,
    upstream_failed,
)

GiB = 1 << 30


@pytest.mark.parametrize(
    "text,size",
    [
        ("0", 0),
        ("1234", 1234),
        ("1k", 1024),
        ("1K", 1024),
        ("10m", 10 << 20),
        ("20g", 20 * GiB),
        ("20G", 20 * GiB),
        ("2t", 2 << 40),
        ("1.5g", 3 * GiB // 2),
        ("0.5k", 512),
        ("1.0001k", 1024),  # whole bytes, rounded down
        (" 20 g ", 20 * GiB),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "g", "-1", "1e3", "20gb", "20GiB", "1p", "1,5g", "1.g"])
def test_parse_size_refuses_with_a_clear_message(text):
    with pytest.raises(ValueError, match="is not a size: give bytes, or a number with a k, m"):
        parse_size(text)


@pytest.mark.parametrize(
    "free,size",
    [(100 * GiB, 20 * GiB), (40 * GiB, 20 * GiB), (30 * GiB, 15 * GiB), (1001, 500), (0, 0)],
)
def test_default_max_size_never_fills_the_disk(free, size):
    assert default_max_size(free) == size


@pytest.mark.parametrize(
    "validated,now,ttl,fresh",
    [
        (100.0, 100.0, 0, False),  # ttl 0: always revalidate
        (100.0, 100.0, 60, True),
        (100.0, 159.9, 60, True),
        (100.0, 160.0, 60, False),
        (100.0, 1000.0, 60, False),
        (100.0, 99.0, 60, False),  # validated "in the future": the clock went back
    ],
)
def test_tag_fresh(validated, now, ttl, fresh):
    assert tag_fresh(validated, now, ttl) is fresh


@pytest.mark.parametrize(
    "validated,now,window,usable",
    [
        (100.0, 200.0, 0, False),  # 0 turns it off
        (100.0, 100.0, 0, False),
        (100.0, 200.0, 604800, True),
        (100.0, 100.0 + 604799, 604800, True),
        (100.0, 100.0 + 604800, 604800, False),
        (100.0, 50.0, 604800, True),  # the clock went back: still served during an outage
    ],
)
def test_stale_usable(validated, now, window, usable):
    assert stale_usable(validated, now, window) is usable


@pytest.mark.parametrize(
    "status,error,failed",
    [
        (None, "connection refused", True),
        (None, "connection reset by peer", True),
        (None, "timeout", True),
        (None, None, True),  # no answer at all
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (429, None, True),
        (408, None, True),
        (200, "reset after the headers", True),
        (200, None, False),
        (304, None, False),
        (307, None, False),
        (400, None, False),
        (401, None, False),  # authoritative answers pass through
        (403, None, False),
        (404, None, False),
    ],
)
def test_upstream_failed(status, error, failed):
    assert upstream_failed(status, error) is failed


@pytest.mark.parametrize(
    "provenance,checked,allowed",
    [
        ("anonymous", False, True),
        ("anonymous", True, True),
        ("route", False, True),
        ("route", True, True),
        ("client", False, False),  # fail closed
        ("client", True, True),
        ("unknown", True, False),
        ("", True, False),
    ],
)
def test_may_read(provenance, checked, allowed):
    assert may_read(provenance, checked) is allowed


def entries(*spec):
    return [E(digest=d, size=s, last_access=t) for d, s, t in spec]


@pytest.mark.parametrize(
    "spec,limit,in_use,chosen",
    [
        # within the limit: nothing
        ([("a", 50, 1), ("b", 50, 2)], 100, set(), []),
        ([], 100, set(), []),
        # above: least recently used first, down to 90 % of the limit
        ([("a", 40, 3), ("b", 40, 1), ("c", 40, 2)], 100, set(), ["b"]),
        ([("a", 10, 1), ("b", 10, 2), ("c", 85, 3)], 100, set(), ["a", "b"]),
        ([("a", 5, 1), ("b", 6, 2), ("c", 90, 3)], 100, set(), ["a", "b"]),  # 90 % exactly
        ([("a", 1, 1), ("b", 101, 2)], 100, set(), ["a", "b"]),
        # never an entry in use, even the oldest
        ([("a", 40, 1), ("b", 40, 2), ("c", 40, 3)], 100, {"a"}, ["b"]),
        ([("a", 40, 1), ("b", 40, 2), ("c", 40, 3)], 100, {"a", "b"}, ["c"]),
        ([("a", 200, 1), ("b", 10, 2)], 100, {"a"}, ["b"]),  # best effort
        ([("a", 200, 1)], 100, {"a"}, []),
        # one entry bigger than the limit goes when not in use
        ([("a", 200, 1)], 100, set(), ["a"]),
        # ties by digest: a stable choice
        ([("b", 60, 1), ("a", 60, 1)], 100, set(), ["a"]),
    ],
)
def test_evict(spec, limit, in_use, chosen):
    assert evict(entries(*spec), limit, in_use) == chosen
    assert evict(reversed(entries(*spec)), limit, in_use) == chosen  # any order in


D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    "status,error,digest,offline,verdict",
    [
        (200, None, D1, False, "current"),
        (200, None, D2, False, "moved"),
        (200, None, "", False, "moved"),  # no digest said: fetch it, the GET is verified
        (404, None, "", False, "gone"),
        (None, "refused", "", False, "failed"),
        (503, None, "", False, "failed"),
        (429, None, "", False, "failed"),
        (401, None, "", False, "pass"),  # authoritative: the client is asked for a token
        (401, None, "", True, "failed"),  # ... which it cannot get: the token service is down
        (403, None, "", True, "pass"),
        (400, None, D1, False, "pass"),
    ],
)
def test_revalidation(status, error, digest, offline, verdict):
    assert revalidation(status, error, digest, D1, offline) == verdict


OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize(
    "accept,ok",
    [
        ([], True),  # no Accept: anything (distribution's default)
        ([""], True),
        ([OCI], True),
        ([f"{INDEX}, {OCI}"], True),
        ([INDEX, OCI.upper()], True),
        ([f"{OCI}; q=0.5"], True),
        (["*/*"], True),
        (["application/*"], True),
        ([INDEX], False),  # the upstream would answer another type for this client
        (["application/vnd.docker.distribution.manifest.v2+json"], False),
    ],
)
def test_acceptable(accept, ok):
    assert acceptable(OCI, accept) is ok

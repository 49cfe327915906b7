"""End to end: what only an S3 cache does (issue 13). The tests that hold for both backends
run against a directory and a bucket through the `cache_backend` fixture (test_e2e_cache*,
test_e2e_replicas); these are the bucket's own.

Real parts: a fresh distribution with token auth per test as "docker.io", skopeo, the
mirrors as `mitmdump -s`. The S3 service is moto's server, a stand-in for real S3
(tests/support/s3server.py says what it cannot show).

What is checked: with regmirror_s3_redirect a hit of a big blob is a 307 to a presigned GET
that the client follows to the storage; an object changed in the bucket is never served
whole, and is dropped and fetched again; two replicas evict one bucket down to its limit,
least recently used first, under one lease; a bucket that does not answer at start leaves
the mirror serving from upstream, not ready, until it answers.
"""

import hashlib
import time
import urllib.parse

import httpx
import pytest

from bench.blobs import Pusher
from tests.support.cache_backends import BucketCache
from tests.support.clients import Skopeo
from tests.support.s3server import CREDENTIALS, S3Server
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_logged,
    assert_stored,
    by_digest,
    cache_mirror,
    check_dir_copy,
    eventually,
    log_lines,
    mirror_token,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def bucket(s3_server, monkeypatch) -> BucketCache:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return BucketCache(s3_server)


def test_with_s3_redirect_a_big_hit_goes_to_a_presigned_url_the_client_follows(
    mirror_factory, upstream_factory, images, tmp_path, bucket
):
    up = upstream_factory(repos=["library/big"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, bucket, regmirror_s3_redirect=True)
    big = images["library/big"]
    layer = big.single.layers[0]
    Skopeo(tmp_path / "s1").copy(f"{mirror.host}/library/big:1", f"dir:{tmp_path / 'cold'}")
    check_dir_copy(tmp_path / "cold", big)
    assert_stored(bucket, big.single.digests)

    upstream = UpstreamLog(up.registry)
    start, since = upstream.mark(), len(mirror.log_text())
    Skopeo(tmp_path / "s2").copy(f"{mirror.host}/library/big:1", f"dir:{tmp_path / 'warm'}")
    check_dir_copy(tmp_path / "warm", big)
    assert by_digest(upstream.between(start, upstream.mark())) == []
    assert_logged(mirror, since, [layer.digest], "307", "by S3 redirect")
    assert_logged(mirror, since, [big.single.config.digest], "200", "cache hit")  # small

    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        r = c.get(f"/v2/library/big/blobs/{layer.digest}", headers=mirror_token(c, "library/big"))
    assert r.status_code == 307
    location = urllib.parse.urlsplit(r.headers["Location"])
    query = urllib.parse.parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}" == bucket.server.url
    assert location.path == f"/{bucket.bucket}/{bucket.key(layer.digest)}"
    assert query["X-Amz-Expires"] == ["300"] and "X-Amz-Signature" in query
    # (moto does not check presigned signatures: that a tampered URL is refused, only real
    # S3 can show)
    assert hashlib.sha256(httpx.get(r.headers["Location"]).content).hexdigest() == layer.digest[7:]


def test_an_object_changed_in_the_bucket_is_never_served_whole_and_is_fetched_again(
    mirror_factory, upstream_factory, images, tmp_path, bucket
):
    up = upstream_factory(repos=["library/big"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, bucket)
    big = images["library/big"]
    layer = big.single.layers[0].digest
    Skopeo(tmp_path / "s1").copy(f"{mirror.host}/library/big:1", f"dir:{tmp_path / 'cold'}")
    assert_stored(bucket, big.single.digests)
    good = bucket.stored(layer)
    bucket.replace(layer, good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])  # same size

    path = f"/v2/library/big/blobs/{layer}"
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        auth = mirror_token(c, "library/big")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            r = c.get(path, headers=auth)
            pytest.fail(f"the changed object was delivered whole: {r.status_code}, "
                        f"{len(r.content)} bytes")  # fmt: skip
        eventually(lambda: log_lines(mirror.log_text(), layer, "is not its digest: dropped"),
                   lambda: "the changed object was not logged as dropped")  # fmt: skip
        eventually(lambda: bucket.stored(layer) is None, lambda: "the bad object is still there")
        upstream = UpstreamLog(up.registry)
        start = upstream.mark()
        r = c.get(path, headers=auth)  # a miss: from upstream, stored again
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == layer[7:]
        assert [e.method for e in by_digest(upstream.between(start, upstream.mark()))] == ["GET"]
    assert_stored(bucket, [layer])


def test_two_replicas_evict_one_bucket_down_to_its_limit_least_recently_used_first(
    mirror_factory, upstream_factory, tmp_path, bucket
):
    """Three 1 MiB blobs and one of 2 MiB under a 3.5 MiB limit: replica 1 fills the three;
    replica 2 (started after, so its first listing sees them) reads the first of them
    again, then fills the fourth. The cache goes down to 90 % of the limit: the two read
    least recently go, and the first, older by upload but read since, stays. (S3 keeps
    upload times in seconds: the steps are a second apart.)"""
    up = upstream_factory(repos=[])
    access = [{"type": "repository", "name": "library/many", "actions": ["pull", "push"]}]
    with Pusher(up.registry.url, up.token_server.issue_token("pusher", access=access)) as p:
        blobs = [p.blob("library/many", (1 + (i == 3)) << 20, 20 + i) for i in range(4)]
    options = {"regmirror_cache_max_size": "3.5m"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = cache_mirror(mirror_factory, tmp_path / "one", up.url, bucket, **options)

    def pull(mirror, blob) -> None:
        with httpx.Client(base_url=mirror.url, timeout=30) as c:
            r = c.get(f"/v2/library/many/blobs/{blob.digest}",
                      headers=mirror_token(c, "library/many"))  # fmt: skip
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == blob.digest[7:]

    for blob in blobs[:3]:
        pull(one, blob)
    assert_stored(bucket, [b.digest for b in blobs[:3]])
    time.sleep(1.1)
    two = cache_mirror(mirror_factory, tmp_path / "two", up.url, bucket, **options)
    pull(two, blobs[0])  # a hit: read after blobs 1 and 2 were uploaded
    assert_logged(two, 0, [blobs[0].digest], "cache hit")
    time.sleep(1.1)
    pull(two, blobs[3])  # 5 MiB > 3.5 MiB: down to 3.15 MiB

    def held() -> set[str]:
        return {b.digest for b in blobs if bucket.stored(b.digest) is not None}

    kept = {blobs[0].digest, blobs[3].digest}
    eventually(lambda: held() == kept, lambda: f"held {sorted(held())}", timeout=20)
    assert "evicted 2 entries from the shared cache" in two.log_text()
    assert bucket.leftovers() == []  # no object without its links, nor links without it
    assert bucket.server.keys(bucket.bucket, f"{bucket.prefix}/links/{blobs[1].digest}/") == []
    assert bucket.server.keys(bucket.bucket, f"{bucket.prefix}/lease/") == []  # released
    pull(one, blobs[1])  # evicted: a miss again, and right


def test_a_bucket_that_does_not_answer_at_start_leaves_the_mirror_serving_from_upstream(
    mirror_factory, upstream_factory, images, tmp_path, monkeypatch
):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    later = S3Server(tmp_path / "s3")  # its port is chosen, nothing listens on it yet
    up = upstream_factory(repos=["library/testimg"])
    options = {"regmirror_cache": "s3://late-bucket/c", "regmirror_s3_endpoint": later.url}
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, **options)
    testimg = images["library/testimg"]
    Skopeo(tmp_path / "s1").copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'a'}")
    check_dir_copy(tmp_path / "a", testimg)
    ready = httpx.get(f"{mirror.url}/_regmirror/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["cache"]["detail"] == (
        "the cache bucket cannot be used (see the log)")  # fmt: skip
    assert "the cache is off until it can be used" in mirror.log_text()
    with later:
        later.client().create_bucket(Bucket="late-bucket")
        eventually(lambda: httpx.get(f"{mirror.url}/_regmirror/readyz").status_code == 200,
                   lambda: "still not ready", timeout=30)  # fmt: skip
        Skopeo(tmp_path / "s2").copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'b'}")
        check_dir_copy(tmp_path / "b", testimg)
        eventually(lambda: later.keys("late-bucket", "c/blobs/"), lambda: "nothing stored")


def test_two_replicas_filling_one_digest_at_once_leave_one_correct_object(
    mirror_factory, upstream_factory, tmp_path, bucket
):
    """Single flight is per process: two replicas asked for one cold blob at the same moment
    both fetch it and both upload it. Both clients get the right bytes, and the bucket ends
    with one object holding them, and no upload left open."""
    import asyncio

    up = upstream_factory(repos=[])
    access = [{"type": "repository", "name": "library/twice", "actions": ["pull", "push"]}]
    with Pusher(up.registry.url, up.token_server.issue_token("pusher", access=access)) as p:
        blob = p.blob("library/twice", 24 << 20, 31)  # three parts of a multipart upload
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    replicas = [cache_mirror(mirror_factory, tmp_path / name, up.url, bucket)
                for name in ("one", "two")]  # fmt: skip
    path = f"/v2/library/twice/blobs/{blob.digest}"
    log = UpstreamLog(up.registry)
    start = log.mark()

    async def pull(mirror) -> str:
        async with httpx.AsyncClient(base_url=mirror.url, timeout=60) as c:
            token = (await c.get("/v2/auth", params={
                "service": "test-registry", "scope": "repository:library/twice:pull"})).json()
            h = hashlib.sha256()
            headers = {"Authorization": f"Bearer {token['token']}"}
            async with c.stream("GET", path, headers=headers) as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    h.update(chunk)
            return "sha256:" + h.hexdigest()

    async def both() -> list[str]:
        return await asyncio.gather(*(pull(m) for m in replicas))

    assert asyncio.run(both()) == [blob.digest] * 2
    gets = [e for e in by_digest(log.between(start, log.mark())) if e.method == "GET"]
    assert len(gets) == 2, gets  # one per replica
    for mirror in replicas:
        assert_logged(mirror, 0, [blob.digest], "cache miss")
    assert_stored(bucket, [blob.digest])
    eventually(lambda: bucket.leftovers() == [], lambda: f"left: {bucket.leftovers()}")
    assert bucket.server.keys(bucket.bucket, bucket.key(blob.digest)) == [bucket.key(blob.digest)]

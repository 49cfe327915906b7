"""End to end: tags in the pull-through cache, stale answers and offline pulls (issue 10).

Real parts: a fresh distribution with token auth per test as "docker.io", its token service
(both stopped mid-test where the test says so), real clients (skopeo, dockerd, ctr), and the
mirror as `mitmdump -s`. The front that answers 429, 503 or 404 for manifests is a stand-in
for Docker Hub's rate limit and outages (tests/support/corrupt.py): it relays everything
else to the real registry.

What is checked: a cached tag is revalidated with one HEAD and served from the cache; a tag
moved upstream is fetched again; when the upstream fails (stopped, 429, 503) a cached tag is
served stale, and content by digest from the cache; an upstream 404 drops the tag and passes
on; with the registry and its token service both down, the mirror answers the ping and
the token request itself, and skopeo, dockerd and ctr pull what is cached, also after a
restart of the mirror.
"""

import httpx
import pytest

from tests.support.clients import Skopeo, write_hosts_toml
from tests.support.corrupt import CorruptingFront
from tests.support.images import build_image, hello_layers, push, sha256_digest
from tests.support.mirror import Mirror
from tests.support.tokenserver import PUSHER_CREDS
from tests.test_e2e_cache import (
    OCI_ACCEPT,
    UpstreamLog,
    assert_stored,
    by_digest,
    by_tag,
    cache_mirror,
    check_dir_copy,
    eventually,
    lookups,
    mirror_token,
    path_of,
    skopeo_pull,
)

pytestmark = pytest.mark.e2e

TESTIMG_TAG = "/v2/library/testimg/manifests/1"
MULTI_TAG = "/v2/library/multi/manifests/1"


def assert_tag_logged(mirror: Mirror, since: int, ref: str, *words: str) -> None:
    """A log line of a manifest request for `ref` (`library/multi:1`) holds all `words`."""

    def logged() -> bool:
        lines = mirror.log_text()[since:].splitlines()
        return any(f"docker.io/{ref} " in ln and all(w in ln for w in words) for ln in lines)

    eventually(logged, lambda: f"no log line of {ref} with {words}")


def manifest(mirror: Mirror, repo: str, reference: str) -> httpx.Response:
    """GET of a manifest through the mirror, with an anonymous token from its realm."""
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        headers = {**mirror_token(client, repo), "Accept": OCI_ACCEPT}
        return client.get(f"/v2/{repo}/manifests/{reference}", headers=headers)


def test_a_second_pull_asks_the_upstream_one_head_per_tag(
    mirror_factory, upstream_factory, skopeo, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    upstream = UpstreamLog(up.registry)
    skopeo_pull(skopeo, mirror, tmp_path / "pull1", images)
    multi = images["library/multi"]
    assert_stored(tmp_path / "cache", {images["library/testimg"].digest, multi.digest})

    log_start = len(mirror.log_text())
    start = upstream.mark()
    skopeo_pull(Skopeo(tmp_path / "skopeo2"), mirror, tmp_path / "pull2", images)
    second = upstream.between(start, upstream.mark())
    assert by_digest(second) == []
    assert sorted((e.method, path_of(e)) for e in by_tag(second)) == [
        ("HEAD", MULTI_TAG),
        ("HEAD", TESTIMG_TAG),
    ]
    assert_tag_logged(mirror, log_start, "library/multi:1", "cache hit")
    assert_tag_logged(mirror, log_start, "library/testimg:1", "cache hit")
    assert lookups(mirror, "manifest", "hit") >= 2

    # within regmirror_tag_ttl the tag is not even revalidated
    fresh = cache_mirror(mirror_factory, tmp_path, up.url, regmirror_tag_ttl="3600")
    skopeo_pull(Skopeo(tmp_path / "skopeo3"), fresh, tmp_path / "pull3", images)
    start = upstream.mark()
    skopeo_pull(Skopeo(tmp_path / "skopeo4"), fresh, tmp_path / "pull4", images)
    assert by_tag(upstream.between(start, upstream.mark())) == []


def test_a_tag_moved_upstream_gives_the_new_digest(
    mirror_factory, upstream_factory, skopeo, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    old = build_image(tmp_path / "old", hello_layers("old"))
    new = build_image(tmp_path / "new", hello_layers("new", extra=b"moved"))
    push(old, f"{up.registry.host}/library/moving:1", tmp_path / "push", creds=PUSHER_CREDS)
    assert manifest(mirror, "library/moving", "1").headers["Docker-Content-Digest"] == old.digest
    assert_stored(tmp_path / "cache", [old.digest])
    assert manifest(mirror, "library/moving", "1").headers["Docker-Content-Digest"] == old.digest

    push(new, f"{up.registry.host}/library/moving:1", tmp_path / "push", creds=PUSHER_CREDS)
    r = manifest(mirror, "library/moving", "1")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == new.digest
    assert sha256_digest(r.content) == new.digest
    assert_stored(tmp_path / "cache", [new.digest])
    out = tmp_path / "pull"
    skopeo.copy(f"{mirror.host}/library/moving:1", f"dir:{out}")
    check_dir_copy(out, new)


def test_with_the_registry_down_cached_tags_and_digests_still_pull(
    mirror_factory, upstream_factory, skopeo, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend)
    skopeo_pull(skopeo, mirror, tmp_path / "pull1", images)
    testimg = images["library/testimg"]
    assert_stored(cache_backend, [testimg.digest, images["library/multi"].digest])
    up.registry.stop()

    log_start = len(mirror.log_text())
    skopeo_pull(Skopeo(tmp_path / "skopeo2"), mirror, tmp_path / "pull2", images)
    out = tmp_path / "by-digest"
    Skopeo(tmp_path / "skopeo3").copy(
        f"{mirror.host}/library/testimg@{testimg.digest}", f"dir:{out}"
    )
    check_dir_copy(out, testimg)
    assert_tag_logged(mirror, log_start, "library/testimg:1", "cache stale")
    assert_tag_logged(mirror, log_start, "library/multi:1", "cache stale")
    assert lookups(mirror, "manifest", "stale") >= 2

    # regmirror_stale_if_error=0: the failure is the answer
    strict = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend,
                          regmirror_stale_if_error="0")  # fmt: skip
    r = httpx.get(f"{strict.url}{TESTIMG_TAG}", headers={"Accept": OCI_ACCEPT}, timeout=30)
    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttling_or_failing_upstream_gets_a_stale_tag(
    status, mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    with CorruptingFront(up.registry) as front:
        mirror = cache_mirror(mirror_factory, tmp_path, front.url)
        digest = images["library/testimg"].digest
        assert manifest(mirror, "library/testimg", "1").headers["Docker-Content-Digest"] == digest
        assert_stored(tmp_path / "cache", [digest])

        front.fail_manifests = status
        log_start = len(mirror.log_text())
        r = manifest(mirror, "library/testimg", "1")
        assert front.failed >= 1  # the fault was real
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == digest
        assert sha256_digest(r.content) == digest
        assert_tag_logged(mirror, log_start, "library/testimg:1", "cache stale")

        strict = cache_mirror(mirror_factory, tmp_path, front.url, regmirror_stale_if_error="0")
        assert manifest(strict, "library/testimg", "1").status_code == status


def test_an_upstream_404_drops_the_tag_and_passes_on(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    with CorruptingFront(up.registry) as front:
        mirror = cache_mirror(mirror_factory, tmp_path, front.url)
        digest = images["library/testimg"].digest
        assert manifest(mirror, "library/testimg", "1").status_code == 200
        assert_stored(tmp_path / "cache", [digest])

        front.fail_manifests = 404
        r = manifest(mirror, "library/testimg", "1")
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        front.fail_manifests = None
        misses = lookups(mirror, "manifest", "miss")
        upstream = UpstreamLog(up.registry)
        start = upstream.mark()
        assert manifest(mirror, "library/testimg", "1").status_code == 200
        # the tag was dropped: a miss, fetched with a GET, not revalidated with a HEAD
        assert [e.method for e in by_tag(upstream.between(start, upstream.mark()))] == ["GET"]
        assert lookups(mirror, "manifest", "miss") == misses + 1


def test_offline_skopeo_docker_and_ctr_pull_what_is_cached(
    mirror_factory,
    upstream_factory,
    skopeo,
    dockerd_factory,
    containerd,
    hosts_dir,
    images,
    tmp_path,
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    first = cache_mirror(mirror_factory, tmp_path, up.url)
    testimg, multi = images["library/testimg"], images["library/multi"]
    skopeo_pull(skopeo, first, tmp_path / "pull1", images)
    assert_stored(tmp_path / "cache", [testimg.digest, multi.digest])
    first.stop()
    # a new mirror process (no upstream token kept in memory) learns the challenge, then
    # the registry and its token service go down
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    assert httpx.get(f"{mirror.url}/v2/", timeout=10).status_code == 401
    up.registry.stop()
    up.token_server.stop()

    log_start = len(mirror.log_text())
    # the ping gets the challenge the mirror learned, the token request a token it signs
    with httpx.Client(base_url=mirror.url, timeout=30) as client:
        ping = client.get("/v2/")
        assert ping.status_code == 401
        assert f'realm="{mirror.url}/v2/auth"' in ping.headers["WWW-Authenticate"]
        token = mirror_token(client, "library/testimg")
        assert token["Authorization"].startswith("Bearer regmirror-offline.")
    skopeo_pull(Skopeo(tmp_path / "skopeo2"), mirror, tmp_path / "pull2", images)
    write_hosts_toml(hosts_dir, "docker.io", mirror.url)
    ns = containerd.new_namespace()
    containerd.pull("docker.io/library/multi:1", hosts_dir, namespace=ns)
    assert containerd.image_digest("docker.io/library/multi:1", namespace=ns) == multi.digest
    docker = dockerd_factory(mirrors=[mirror.url])
    docker.pull("testimg:1")
    assert f"testimg@{testimg.digest}" in docker.repo_digests("testimg:1")
    assert_tag_logged(mirror, log_start, "library/testimg:1", "cache stale")
    assert_tag_logged(mirror, log_start, "library/multi:1", "cache stale")
    log = mirror.log_text()[log_start:]
    assert "pull -> 200 by token proxy offline" in log, log[-3000:]
    assert "regmirror-offline" not in up.registry.log_text()  # never sent upstream

    # a restart with the upstream still down: start-up needs no upstream; with no
    # challenge ever learned, the ping says no auth, and the cache serves
    mirror.stop()
    again = cache_mirror(mirror_factory, tmp_path, up.url)
    ping = httpx.get(f"{again.url}/v2/", timeout=10)
    assert (ping.status_code, ping.headers["Docker-Distribution-Api-Version"]) == (
        200,
        "registry/2.0",
    )
    skopeo_pull(Skopeo(tmp_path / "skopeo3"), again, tmp_path / "pull3", images)

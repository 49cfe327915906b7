"""End to end: the pull-through cache (issue 10) seen from more clients and over time:
podman's second pull, eviction under a small `regmirror_cache_max_size`, and content by
digest served from the cache after a restart with the upstream registry stopped.

Real parts: a fresh distribution with token auth per test as "docker.io" (what reached it
is counted from its access log), podman and skopeo, the mirror as `mitmdump -s`.
"""

import pytest

from tests.test_e2e_cache import (
    UpstreamLog,
    assert_logged,
    assert_stored,
    by_digest,
    by_tag,
    cache_mirror,
    digests_of,
    path_of,
)

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------------------------------
# podman: a second pull never fetches content upstream
# ------------------------------------------------------------------------------------------


def test_second_podman_pull_fetches_no_content_upstream(
    mirror_factory, upstream_factory, podman_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    upstream = UpstreamLog(up.registry)
    testimg, multi = images["library/testimg"], images["library/multi"]
    amd64 = multi.platforms["linux/amd64"]
    # podman asks for the tags, then for the rest by digest: testimg's config and layers,
    # multi's amd64 manifest, config and layers
    content = {*testimg.single.digests[1:], *amd64.digests}
    refs = {"docker.io/library/testimg:1": testimg, "docker.io/library/multi:1": multi}

    def pull(podman) -> None:
        for ref, image in refs.items():
            podman.pull(ref)
            info = podman.inspect(ref)
            assert any(d.endswith(f"@{image.digest}") for d in info["RepoDigests"]), info
            config = (image.single if image is testimg else amd64).config.digest
            assert info["Id"] == config.removeprefix("sha256:")

    start = upstream.mark()
    pull(podman_factory(mirror=mirror.host))
    assert_stored(tmp_path / "cache", content)
    assert digests_of(upstream.between(start, upstream.mark())) == content

    log_start = len(mirror.log_text())
    start = upstream.mark()
    pull(podman_factory(mirror=mirror.host))  # its own, empty storage
    second = upstream.between(start, upstream.mark())
    assert by_digest(second) == [], "the second pull fetched content by digest upstream"
    assert {path_of(e) for e in by_tag(second)} == {
        "/v2/library/testimg/manifests/1",
        "/v2/library/multi/manifests/1",
    }  # the count sees the second pull
    assert_logged(mirror, log_start, content, "cache hit")

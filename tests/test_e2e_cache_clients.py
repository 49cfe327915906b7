"""End to end: the pull-through cache (issue 10) seen from more clients and over time:
podman's second pull, eviction under a small `regmirror_cache_max_size`, and content by
digest served from the cache after a restart with the upstream registry stopped.

Real parts: a fresh distribution with token auth per test as "docker.io" (what reached it
is counted from its access log), podman and skopeo, the mirror as `mitmdump -s`.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.support.clients import Skopeo
from tests.support.images import BuiltImage, build_image, push, random_bytes
from tests.support.tokenserver import PUSHER_CREDS
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_logged,
    assert_stored,
    by_digest,
    by_tag,
    cache_mirror,
    check_dir_copy,
    digests_of,
    eventually,
    metric,
    path_of,
    stored_path,
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


# ------------------------------------------------------------------------------------------
# eviction: the cache stays near its bound, and pulls stay correct
# ------------------------------------------------------------------------------------------

EVICT_BOUND = 2 << 20  # regmirror_cache_max_size
EVICT_LAYER = 640 << 10  # random bytes per layer: gzip keeps them about this size
EVICT_IMAGES = 5  # 2 layers each: about 6.3 MiB of blobs, 3 times the bound


def stored_bytes(cache: Path) -> int:
    """What the cache's content files hold (fills in progress are in cache/tmp)."""
    total = 0
    for p in (cache / "blobs").rglob("*"):
        with suppress(FileNotFoundError):  # evicted while counted
            total += p.stat().st_size if p.is_file() else 0
    return total


@contextmanager
def peak_stored_bytes(cache: Path) -> Iterator[list[int]]:
    """The most the cache's content files held at once while the block ran, sampled every
    10 ms, as the single item of the yielded list (set when the block ends)."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], stored_bytes(cache))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def test_eviction_keeps_the_cache_near_its_bound_and_pulls_correct(
    mirror_factory, upstream_factory, tmp_path
):
    up = upstream_factory(repos=[])
    built: dict[str, BuiltImage] = {}
    for i in range(EVICT_IMAGES):
        layers = [{f"l{j}.bin": random_bytes(EVICT_LAYER, 100 * i + j)} for j in range(2)]
        image = build_image(tmp_path / "layouts" / str(i), layers, gzip_level=1)
        repo = f"library/evict{i}"
        built[repo] = push(image, f"{up.registry.host}/{repo}:1", tmp_path / "push", PUSHER_CREDS)
    largest = max(layer.size for image in built.values() for layer in image.single.layers)
    total = sum(
        sum(b.size for b in (p.manifest, p.config, *p.layers))
        for image in built.values()
        for p in image.platforms.values()
    )
    assert total > 3 * EVICT_BOUND
    mirror = cache_mirror(
        mirror_factory, tmp_path, up.url, regmirror_cache_max_size=str(EVICT_BOUND)
    )
    cache = tmp_path / "cache"
    upstream = UpstreamLog(up.registry)

    def pull(repo: str, out: Path) -> None:
        Skopeo(out.with_name(out.name + "-skopeo")).copy(f"{mirror.host}/{repo}:1", f"dir:{out}")
        check_dir_copy(out, built[repo])

    with peak_stored_bytes(cache) as peak:
        for repo in built:
            pull(repo, tmp_path / "pulls" / repo)
        # the last fill's commit and the eviction it starts run after the client's answer
        eventually(
            lambda: stored_bytes(cache) <= EVICT_BOUND,
            lambda: f"{stored_bytes(cache)} bytes stored, above the bound {EVICT_BOUND}",
        )
    assert peak[0] <= EVICT_BOUND + largest, f"{peak[0]} bytes stored at once"
    assert metric(mirror, "regmirror_cache_evictions_total") > 0
    assert metric(mirror, "regmirror_cache_size_bytes") <= EVICT_BOUND + largest

    first = next(iter(built))
    evicted = [layer.digest for layer in built[first].single.layers]
    assert not any(stored_path(cache, d).exists() for d in evicted)
    start = upstream.mark()
    pull(first, tmp_path / "pulls" / "again")
    assert set(evicted) <= digests_of(upstream.between(start, upstream.mark()))
    assert_stored(cache, evicted)  # kept again, the newest now

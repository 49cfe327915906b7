"""End to end: the pull-through cache (issue 10) seen from more clients and over time:
podman's second pull, eviction under a small `regmirror_cache_max_size`, and content by
digest served from the cache after a restart with the upstream registry stopped.

Real parts: a fresh distribution with token auth per test as "docker.io" (what reached it
is counted from its access log), podman, skopeo and ctr, the mirror as `mitmdump -s`.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.support.clients import Skopeo, write_hosts_toml
from tests.support.images import BuiltImage, build_image, push, random_bytes
from tests.support.mirror import Mirror
from tests.support.tokenserver import PUSHER_CREDS
from tests.support.upstream import Upstream
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_logged,
    assert_stored,
    by_digest,
    by_tag,
    cache_mirror,
    check_dir_copy,
    check_oci_copy,
    digests_of,
    eventually,
    lookups,
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


# ------------------------------------------------------------------------------------------
# persistence: content by digest is served after a restart with the upstream registry down
# ------------------------------------------------------------------------------------------


def by_digest_refs(images: dict[str, BuiltImage]) -> dict[str, BuiltImage]:
    """library/testimg by its manifest's digest, library/multi by its index's."""
    repos = ("library/testimg", "library/multi")
    return {f"{repo}@{images[repo].digest}": images[repo] for repo in repos}


def skopeo_copy_by_digest(
    skopeo: Skopeo, mirror: Mirror, ref: str, image: BuiltImage, dest: Path
) -> None:
    """An index with `copy --all` to oci:, a manifest to dir:, checked either way."""
    if image.index:
        skopeo.copy(f"{mirror.host}/{ref}", f"oci:{dest}:1", all=True)
        check_oci_copy(dest, image)
    else:
        skopeo.copy(f"{mirror.host}/{ref}", f"dir:{dest}")
        check_dir_copy(dest, image)


def restarted_with_the_upstream_registry_down(
    mirror_factory, up: Upstream, images: dict[str, BuiltImage], tmp_path: Path
) -> Mirror:
    """skopeo pulls by_digest_refs through a mirror, which is then stopped, and so is the
    upstream registry (its token service runs on). Returns a new mirror on the same cache
    directory, started while the registry is down."""
    cache = tmp_path / "cache"
    first = cache_mirror(mirror_factory, tmp_path, up.url)
    skopeo = Skopeo(tmp_path / "skopeo1")
    for i, (ref, image) in enumerate(by_digest_refs(images).items()):
        skopeo_copy_by_digest(skopeo, first, ref, image, tmp_path / f"pull1-{i}")
        assert_stored(cache, image.blob_digests())
    first.stop()
    up.registry.stop()
    (tmp_path / "again").mkdir()
    return cache_mirror(mirror_factory, tmp_path / "again", up.url, regmirror_cache=str(cache))


def assert_served_from_the_cache(mirror: Mirror, content: set[str]) -> None:
    assert_logged(mirror, 0, content, "cache hit")
    assert lookups(mirror, "blob", "miss") == lookups(mirror, "manifest", "miss") == 0


def test_ctr_pulls_by_digest_after_a_restart_with_the_upstream_registry_down(
    mirror_factory, upstream_factory, containerd, hosts_dir, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = restarted_with_the_upstream_registry_down(mirror_factory, up, images, tmp_path)
    write_hosts_toml(hosts_dir, "docker.io", mirror.url)
    ns = containerd.new_namespace()
    content: set[str] = set()
    for ref, image in by_digest_refs(images).items():
        containerd.pull(f"docker.io/{ref}", hosts_dir, namespace=ns)
        assert containerd.image_digest(f"docker.io/{ref}", namespace=ns) == image.digest
        # containerd fetches the index (if any), the host's platform manifest, its config
        # and layers, all by digest
        content |= {image.digest, *image.platforms["linux/amd64"].digests}
    assert containerd.content_digests(namespace=ns) >= content
    assert_served_from_the_cache(mirror, content)


def test_skopeo_pulls_by_digest_after_a_restart_with_the_upstream_registry_down(
    mirror_factory, upstream_factory, images, tmp_path
):
    """skopeo pings /v2/ first: the restarted mirror never saw the upstream's challenge and
    cannot reach it, so it answers the ping itself (200, no auth: offline), and the pull by
    digest is served from the cache."""
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = restarted_with_the_upstream_registry_down(mirror_factory, up, images, tmp_path)
    skopeo = Skopeo(tmp_path / "skopeo2")
    content: set[str] = set()
    for i, (ref, image) in enumerate(by_digest_refs(images).items()):
        skopeo_copy_by_digest(skopeo, mirror, ref, image, tmp_path / f"pull2-{i}")
        content |= image.blob_digests()
    assert_served_from_the_cache(mirror, content)
    assert "ping docker.io -> 200 by token proxy offline" in mirror.log_text()

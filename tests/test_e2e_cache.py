"""End to end: the pull-through cache (issue 10): content by digest. Tags, stale answers
and offline pulls: test_e2e_cache_tags.py.

Real parts: a fresh distribution with token auth per test as "docker.io" (so that what
reached it can be counted exactly from its access log), real clients (skopeo, ctr, dockerd),
and the mirror as `mitmdump -s` with `regmirror_cache` in the test's directory.

What is checked: blobs and manifests by digest are stored when their bytes match, in
`<cache>/blobs/sha256/<first 2 hex>/<hex>`; a second pull through the same repository name
never asks the upstream for them (tags are revalidated with a HEAD); hits carry
the upstream's headers and honour Range; a digest asked for through another repository name,
or content fetched with a client's own credentials (stored, yet not served to others), goes
upstream, which decides; a corrupted blob is never stored and its transfer never ends as if
whole; a cache directory or size that cannot be used stops the start-up.
"""

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cache_backends import CacheBackend, DiskCache
from tests.support.clients import CommandError, Skopeo, write_hosts_toml
from tests.support.corrupt import CorruptingFront
from tests.support.images import BuiltImage, sha256_digest
from tests.support.mirror import Mirror
from tests.support.procs import free_port, wait_until
from tests.support.rawhttp import exchange, parse_responses
from tests.support.registry import AccessLogEntry, Registry
from tests.support.tokenserver import ALICE_CREDS

pytestmark = pytest.mark.e2e

BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")
STARTUP_TIMEOUT = 15  # s; mitmdump starts and exits in about 1 s here
OCI_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def cache_mirror(
    mirror_factory, tmp_path: Path, upstream_url: str, backend: CacheBackend | None = None,
    **options,
) -> Mirror:  # fmt: skip
    """A mirror whose Docker Hub is `upstream_url`, caching in `backend` (by default the
    directory tmp_path/cache)."""
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{upstream_url}"\n')
    backend = backend or DiskCache(tmp_path / "cache")
    return mirror_factory(
        upstream_url, {"regmirror_config": str(cfg), **backend.options(), **options}
    )


class UpstreamLog:
    """What reached a registry between two marks, from distribution's access log. mark()
    sends a probe straight to the registry and waits for its log line: distribution logs a
    request once it has answered it, so the requests of a finished pull are logged before
    the probe that follows it."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def mark(self) -> int:
        probe = f"/v2/regmirror-mark/{uuid.uuid4().hex}/tags/list"
        httpx.get(self.registry.url + probe, timeout=10)
        at: list[int] = []

        def logged() -> bool:
            at[:] = [i for i, e in enumerate(self.registry.access_log()) if e.path == probe]
            return bool(at)

        wait_until(logged, 10, f"the upstream logging {probe}")
        return at[0]

    def between(self, start: int, end: int) -> list[AccessLogEntry]:
        return self.registry.access_log()[start + 1 : end]


def path_of(entry: AccessLogEntry) -> str:
    return entry.path.split("?", 1)[0]


def by_digest(entries: Iterable[AccessLogEntry]) -> list[AccessLogEntry]:
    """Requests for content by digest: any blob request, manifest requests by digest."""
    out = []
    for e in entries:
        m = MANIFEST.fullmatch(path_of(e))
        if BLOB.fullmatch(path_of(e)) or (m and m["reference"].startswith("sha256:")):
            out.append(e)
    return out


def digests_of(entries: Iterable[AccessLogEntry]) -> set[str]:
    return {path_of(e).rsplit("/", 1)[1] for e in by_digest(entries)}


def by_tag(entries: Iterable[AccessLogEntry]) -> list[AccessLogEntry]:
    return [
        e
        for e in entries
        if (m := MANIFEST.fullmatch(path_of(e))) and not m["reference"].startswith("sha256:")
    ]


def stored_path(cache: Path, digest: str) -> Path:
    hex_ = digest.removeprefix("sha256:")
    return cache / "blobs" / "sha256" / hex_[:2] / hex_


def eventually(check: Callable[[], bool], failure: Callable[[], str], timeout: float = 5.0) -> None:
    """Poll check(), failing with failure() after `timeout` seconds: the mirror commits a
    fill and logs its line just after the client got the last byte."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{failure()} (after {timeout:.0f} s)", pytrace=False)
        time.sleep(0.05)


def assert_stored(cache: Path | CacheBackend, digests: Iterable[str]) -> None:
    """Every digest becomes content in the cache (a directory's path, or a backend) holding
    exactly its bytes."""
    backend = DiskCache(cache) if isinstance(cache, Path) else cache
    wanted = sorted(digests)

    def missing() -> list[str]:
        return [d for d in wanted if backend.stored(d) is None]

    eventually(lambda: not missing(), lambda: f"not stored in {backend.name}: {missing()}")
    for d in wanted:
        assert sha256_digest(backend.stored(d) or b"") == d


def log_lines(text: str, digest: str, *words: str) -> list[str]:
    """Lines that name `digest` (the log shortens it to its first 12 hex digits) and hold
    every one of `words`."""
    return [
        line for line in text.splitlines() if digest[:19] in line and all(w in line for w in words)
    ]


def assert_logged(mirror: Mirror, since: int, digests: Iterable[str], *words: str) -> None:
    wanted = sorted(digests)

    def missing() -> list[str]:
        text = mirror.log_text()[since:]
        return [d for d in wanted if not log_lines(text, d, *words)]

    eventually(lambda: not missing(), lambda: f"no log line with {words} for {missing()}")


def metric(mirror: Mirror, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    text = httpx.get(f"{mirror.url}/_regmirror/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def lookups(mirror: Mirror, operation: str, result: str) -> float:
    return metric(mirror, "regmirror_cache_lookups_total", operation=operation, result=result)


def check_dir_copy(dest: Path, image: BuiltImage) -> None:
    """`skopeo copy ... dir:DEST` wrote the built image: its manifest's bytes, and a file
    per config and layer that holds exactly that digest's bytes."""
    assert sha256_digest((dest / "manifest.json").read_bytes()) == image.digest
    blobs = {p.name for p in dest.iterdir()} - {"manifest.json", "version"}
    assert blobs == {d.split(":", 1)[1] for d in image.single.digests[1:]}
    for name in blobs:
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == name


def check_oci_copy(dest: Path, image: BuiltImage) -> None:
    """`skopeo copy --all ... oci:DEST:1` wrote the whole multi-arch image."""
    index = json.loads((dest / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.digest]
    blobs = {p.name for p in (dest / "blobs" / "sha256").iterdir()}
    assert blobs == {d.split(":", 1)[1] for d in image.blob_digests()}
    for name in blobs:
        assert hashlib.sha256((dest / "blobs" / "sha256" / name).read_bytes()).hexdigest() == name


def mirror_token(client: httpx.Client, repo: str) -> dict[str, str]:
    """An anonymous client's Authorization for pulling `repo`, from the mirror's realm."""
    r = client.get(
        "/v2/auth", params={"service": "test-registry", "scope": f"repository:{repo}:pull"}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def raw_head(port: int, path: str, headers: dict[str, str]) -> tuple[list[int], bytes]:
    """The statuses of the answers to one HEAD on a kept-alive connection, and the bytes that
    follow them on the wire (a HEAD answer has no body, so there must be none)."""
    lines = [f"HEAD {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    answer = exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), head=True)
    responses, rest = parse_responses(answer.data, head=True)
    return [r.status for r in responses], rest


# ------------------------------------------------------------------------------------------
# a second pull never fetches content upstream
# ------------------------------------------------------------------------------------------


def skopeo_pull(skopeo: Skopeo, mirror: Mirror, out: Path, images: dict[str, BuiltImage]) -> None:
    """library/testimg:1 to dir: and `copy --all` of library/multi:1 to oci:, both checked."""
    out.mkdir()
    skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{out / 'testimg'}")
    skopeo.copy(f"{mirror.host}/library/multi:1", f"oci:{out / 'multi'}:1", all=True)
    check_dir_copy(out / "testimg", images["library/testimg"])
    check_oci_copy(out / "multi", images["library/multi"])


@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "redirected-to-cdn"])
def test_second_skopeo_pull_fetches_no_content_upstream(
    redirect, mirror_factory, upstream_factory, skopeo, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/testimg", "library/multi"], redirect=redirect)
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend,
                          regmirror_cache_max_size="64m")  # fmt: skip
    cache = cache_backend
    upstream = UpstreamLog(up.registry)
    multi = images["library/multi"]
    # content by digest: testimg's config and layers; multi's platform manifests, configs
    # and layers (its index is asked for by tag)
    content = set(images["library/testimg"].single.digests[1:])
    content |= multi.blob_digests() - {multi.digest}
    blobs = content - {p.manifest.digest for p in multi.platforms.values()}

    start = upstream.mark()
    skopeo_pull(skopeo, mirror, tmp_path / "pull1", images)
    assert_stored(cache, content)
    first = upstream.between(start, upstream.mark())
    assert digests_of(first) == content  # the count sees every fetch of the first pull
    assert_logged(mirror, 0, content, "cache miss")
    assert lookups(mirror, "blob", "miss") >= len(blobs)
    hits_before, misses_before = lookups(mirror, "blob", "hit"), lookups(mirror, "blob", "miss")
    blob_server_before = len(up.redirector.blob_requests.all()) if redirect else 0

    log_start = len(mirror.log_text())
    start = upstream.mark()
    skopeo_pull(Skopeo(tmp_path / "skopeo2"), mirror, tmp_path / "pull2", images)
    second = upstream.between(start, upstream.mark())
    assert by_digest(second) == [], "the second pull fetched content by digest upstream"
    assert {path_of(e) for e in by_tag(second)} >= {
        "/v2/library/testimg/manifests/1",
        "/v2/library/multi/manifests/1",
    }  # tags still go upstream: the count sees the second pull
    if redirect:
        assert len(up.redirector.blob_requests.all()) == blob_server_before
    assert_logged(mirror, log_start, content, "cache hit")
    assert lookups(mirror, "blob", "hit") - hits_before >= len(blobs)
    assert lookups(mirror, "blob", "miss") == misses_before


def test_second_ctr_pull_fetches_no_content_upstream(
    mirror_factory, upstream_factory, containerd, hosts_dir, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend)
    upstream = UpstreamLog(up.registry)
    write_hosts_toml(hosts_dir, "docker.io", mirror.url)
    multi = images["library/multi"]
    # containerd resolves the tag, then fetches the index, the host's platform manifest, its
    # config and layers by digest
    content = {multi.digest, *multi.platforms["linux/amd64"].digests}
    ref = "docker.io/library/multi:1"

    start = upstream.mark()
    containerd.pull(ref, hosts_dir, namespace=(ns1 := containerd.new_namespace()))
    assert containerd.image_digest(ref, namespace=ns1) == multi.digest
    assert_stored(cache_backend, content)
    assert digests_of(upstream.between(start, upstream.mark())) == content

    log_start = len(mirror.log_text())
    start = upstream.mark()
    containerd.pull(ref, hosts_dir, namespace=(ns2 := containerd.new_namespace()))
    second = upstream.between(start, upstream.mark())
    assert containerd.image_digest(ref, namespace=ns2) == multi.digest
    assert containerd.content_digests(namespace=ns2) >= content
    assert by_digest(second) == [], "the second pull fetched content by digest upstream"
    assert {path_of(e) for e in by_tag(second)} == {"/v2/library/multi/manifests/1"}
    assert_logged(mirror, log_start, content, "cache hit")


def test_second_docker_pull_fetches_no_content_upstream(
    mirror_factory, upstream_factory, dockerd_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    upstream = UpstreamLog(up.registry)
    image = images["library/testimg"]
    content = set(image.single.digests)  # docker HEADs the tag, then GETs by digest
    blobs = set(image.single.digests[1:])
    docker = dockerd_factory(mirrors=[mirror.url])

    start = upstream.mark()
    docker.pull("testimg:1")
    assert_stored(tmp_path / "cache", content)
    assert digests_of(upstream.between(start, upstream.mark())) == content
    docker.rmi("testimg:1", check=True)  # its layers go with it: the next pull downloads

    log_start = len(mirror.log_text())
    start = upstream.mark()
    docker.pull("testimg:1")
    second = upstream.between(start, upstream.mark())
    assert f"testimg@{image.digest}" in docker.repo_digests("testimg:1")
    assert by_digest(second) == [], "the second pull fetched content by digest upstream"
    assert by_tag(second), "the count sees the second pull"
    # dockerd may keep the manifest after rmi; the config and layers it fetches again
    assert_logged(mirror, log_start, blobs, "cache hit")


# ------------------------------------------------------------------------------------------
# what a hit answers
# ------------------------------------------------------------------------------------------


def test_hits_answer_like_the_upstream_and_honour_range(
    mirror_factory, upstream_factory, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/big", "org/app"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend)
    upstream = UpstreamLog(up.registry)
    big = images["library/big"]
    layer, manifest = big.layers[0], big.single.manifest
    data = big.read_blob(layer.digest)
    blob_path = f"/v2/library/big/blobs/{layer.digest}"
    manifest_path = f"/v2/library/big/manifests/{manifest.digest}"
    accept = {"Accept": OCI_ACCEPT}
    # what the upstream itself answers, for the headers a hit must repeat
    direct_auth = {
        "Authorization": "Bearer "
        + up.token_server.issue_token(scopes=["repository:library/big:pull"])
    }
    direct_blob = httpx.head(up.registry.url + blob_path, headers=direct_auth, timeout=30)
    direct_manifest = httpx.head(
        up.registry.url + manifest_path, headers=direct_auth | accept, timeout=30
    )
    assert direct_blob.status_code == direct_manifest.status_code == 200

    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        auth = mirror_token(c, "library/big")
        app_auth = mirror_token(c, "org/app")
        # the fills: a miss streams from the upstream and is stored
        assert sha256_digest(c.get(blob_path, headers=auth).content) == layer.digest
        assert sha256_digest(c.get(manifest_path, headers=auth | accept).content) == (
            manifest.digest
        )
        assert_stored(cache_backend, [layer.digest, manifest.digest])

        start = upstream.mark()
        got = c.get(blob_path, headers=auth)
        head = c.head(blob_path, headers=auth)
        part = c.get(blob_path, headers=auth | {"Range": "bytes=1048576-2097151"})
        tail = c.get(blob_path, headers=auth | {"Range": f"bytes={layer.size - 100}-"})
        m_get = c.get(manifest_path, headers=auth | accept)
        m_head = c.head(manifest_path, headers=auth | accept)
        raw_heads = [
            raw_head(mirror.port, path, auth | accept) for path in (blob_path, manifest_path)
        ]
        assert upstream.between(start, upstream.mark()) == [], "a hit contacted the upstream"

        # another repository's name: the upstream decides (this digest is not in org/app)
        start = upstream.mark()
        other_blob = c.get(f"/v2/org/app/blobs/{layer.digest}", headers=app_auth)
        other_manifest = c.get(
            f"/v2/org/app/manifests/{manifest.digest}", headers=app_auth | accept
        )
        other = upstream.between(start, upstream.mark())

    for r in (got, head):
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == layer.size
        assert r.headers["Docker-Content-Digest"] == layer.digest
        assert r.headers["Content-Type"] == direct_blob.headers["Content-Type"]
        assert r.headers["ETag"] == direct_blob.headers["ETag"] == f'"{layer.digest}"'
    assert got.content == data
    assert raw_heads == [([200], b""), ([200], b"")]  # HEAD: nothing after the head
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1048576-2097151/{layer.size}"
    assert int(part.headers["Content-Length"]) == 1048576
    assert part.content == data[1048576:2097152]
    assert tail.status_code == 206
    last = layer.size - 1
    assert tail.headers["Content-Range"] == f"bytes {last - 99}-{last}/{layer.size}"
    assert tail.content == data[-100:]
    for r in (m_get, m_head):
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == manifest.size
        assert r.headers["Docker-Content-Digest"] == manifest.digest
        assert r.headers["Content-Type"] == direct_manifest.headers["Content-Type"]
        assert r.headers["ETag"] == direct_manifest.headers["ETag"] == f'"{manifest.digest}"'
    assert direct_manifest.headers["Content-Type"] == manifest.media_type
    assert sha256_digest(m_get.content) == manifest.digest
    assert_logged(mirror, 0, [layer.digest, manifest.digest], "cache hit")

    # refused by the upstream, not served from the cache under a name it was never fetched by
    assert (other_blob.status_code, other_manifest.status_code) == (404, 404)
    assert other_blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert other_manifest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert [(e.method, path_of(e), e.status) for e in other] == [
        ("GET", f"/v2/org/app/blobs/{layer.digest}", 404),
        ("GET", f"/v2/org/app/manifests/{manifest.digest}", 404),
    ]


# ------------------------------------------------------------------------------------------
# integrity
# ------------------------------------------------------------------------------------------


def test_a_corrupted_blob_is_never_stored_nor_delivered_whole(
    mirror_factory, upstream_factory, skopeo, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/testimg"])
    front = CorruptingFront(up.registry).start()
    try:
        mirror = cache_mirror(mirror_factory, tmp_path, front.url, cache_backend)
        cache = cache_backend
        upstream = UpstreamLog(up.registry)
        image = images["library/testimg"]
        bad = image.single.layers[1].digest
        blob_path = f"/v2/library/testimg/blobs/{bad}"
        front.corrupt = bad

        with pytest.raises(CommandError) as failed:
            skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'pull1'}")
        assert re.search(r"(?i)digest|unexpected EOF|connection reset", failed.value.stderr)
        # a plain client: the body never ends as if it were complete
        with httpx.Client(base_url=mirror.url, timeout=30) as c:
            auth = mirror_token(c, "library/testimg")
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                r = c.get(blob_path, headers=auth)
                pytest.fail(
                    f"the corrupted blob was delivered whole: {r.status_code}, "
                    f"{len(r.content)} bytes, {sha256_digest(r.content)} (asked for {bad})"
                )
        assert front.corrupted >= 2  # the fault was real, for both clients
        assert cache.stored(bad) is None
        if isinstance(cache, DiskCache):
            assert not [p for p in cache.root.rglob("*") if p.name == bad.split(":", 1)[1]]
        assert cache.leftovers() == []  # no temporary file, no multipart upload left
        assert_logged(mirror, 0, [bad], "fill failed", "digest mismatch")
        failures = "regmirror_cache_fill_failures_total"
        assert metric(mirror, failures, reason="digest mismatch") >= 1

        front.corrupt = None
        Skopeo(tmp_path / "skopeo2").copy(
            f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'pull2'}"
        )
        check_dir_copy(tmp_path / "pull2", image)
        assert_stored(cache, image.single.digests[1:])
        start = upstream.mark()
        Skopeo(tmp_path / "skopeo3").copy(
            f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'pull3'}"
        )
        check_dir_copy(tmp_path / "pull3", image)
        assert by_digest(upstream.between(start, upstream.mark())) == []
    finally:
        front.stop()


# ------------------------------------------------------------------------------------------
# the cache never widens access
# ------------------------------------------------------------------------------------------


def test_content_fetched_with_a_clients_credentials_is_served_to_her_once_the_upstream_agrees(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["private/secret"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    upstream = UpstreamLog(up.registry)
    secret = images["private/secret"]
    Skopeo(tmp_path / "s1").copy(
        f"{mirror.host}/private/secret:1", f"dir:{tmp_path / 'pull1'}", creds=ALICE_CREDS
    )
    assert_stored(tmp_path / "cache", [secret.digest, *secret.single.digests[1:]])

    log_start = len(mirror.log_text())
    start = upstream.mark()
    Skopeo(tmp_path / "s2").copy(
        f"{mirror.host}/private/secret:1", f"dir:{tmp_path / 'pull2'}", creds=ALICE_CREDS
    )
    check_dir_copy(tmp_path / "pull2", secret)
    second = upstream.between(start, upstream.mark())
    # the upstream was asked whether alice's token may read the repository (the tag's
    # HEAD), and the answer was remembered: no GET of content, no further check
    assert [(e.method, e.status) for e in by_tag(second)] == [("HEAD", 200)]
    assert by_digest(second) == []
    assert_logged(mirror, log_start, secret.single.digests[1:], "cache hit")


def test_content_fetched_with_a_clients_credentials_is_not_served_to_others(
    mirror_factory, upstream_factory, skopeo, images, tmp_path, cache_backend
):
    up = upstream_factory(repos=["library/testimg", "private/secret"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend)
    upstream = UpstreamLog(up.registry)
    secret = images["private/secret"]
    layer = secret.single.layers[0].digest
    skopeo.copy(f"{mirror.host}/private/secret:1", f"dir:{tmp_path / 'alice'}", creds=ALICE_CREDS)
    check_dir_copy(tmp_path / "alice", secret)
    skopeo.inspect(f"{mirror.host}/private/secret@{secret.digest}", creds=ALICE_CREDS, raw=True)
    # the bytes are in the cache: the refusals below hold even so
    assert_stored(cache_backend, [secret.digest, *secret.single.digests[1:]])

    manifest_path = f"/v2/private/secret/manifests/{secret.digest}"
    blob_path = f"/v2/private/secret/blobs/{layer}"
    elsewhere = f"/v2/library/testimg/blobs/{layer}"
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        anonymous = mirror_token(c, "private/secret")  # a token without access to it
        public = mirror_token(c, "library/testimg")
        oci = anonymous | {"Accept": OCI_ACCEPT}
        hits = {kind: lookups(mirror, kind, "hit") for kind in ("blob", "manifest")}
        misses = {kind: lookups(mirror, kind, "miss") for kind in ("blob", "manifest")}
        log_start = len(mirror.log_text())
        start = upstream.mark()
        answers = [
            ("GET", manifest_path, c.get(manifest_path, headers={"Accept": OCI_ACCEPT})),
            ("GET", manifest_path, c.get(manifest_path, headers=oci)),
            ("HEAD", manifest_path, c.head(manifest_path, headers=anonymous)),
            ("GET", blob_path, c.get(blob_path, headers=anonymous)),
            ("HEAD", blob_path, c.head(blob_path, headers=anonymous)),
            ("GET", elsewhere, c.get(elsewhere, headers=public)),
        ]
        reached = upstream.between(start, upstream.mark())

    got = [(method, path, r.status_code) for method, path, r in answers]
    refused = [(m, p, 401) for m, p, _ in answers[:-1]] + [("GET", elsewhere, 404)]
    assert got == refused
    assert answers[-1][2].json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    # each refusal is the upstream's: every request reached it, and it said no
    assert Counter(refused) <= Counter((e.method, path_of(e), e.status) for e in reached)
    # and the mirror says so: each was a miss, none a hit
    assert {kind: lookups(mirror, kind, "hit") for kind in hits} == hits
    assert {kind: lookups(mirror, kind, "miss") - misses[kind] for kind in misses} == {
        "blob": 3,
        "manifest": 3,
    }
    text = mirror.log_text()[log_start:]
    assert log_lines(text, layer, "library/testimg", "404", "cache miss"), text
    assert not log_lines(text, layer, "cache hit") + log_lines(text, secret.digest, "cache hit")


# ------------------------------------------------------------------------------------------
# start-up
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unusable-directory", "bad-max-size"])
def test_an_unusable_cache_option_stops_the_start(case, tmp_path):
    """mitmdump logs the options error, then exits by itself with a non-zero status (after
    opening its port: the harness's Mirror.start() would report "the addon script failed to
    load" and stop it, so the command is run here to see it end on its own)."""
    (tmp_path / "file").write_text("a regular file, not a directory\n")
    if case == "unusable-directory":
        option, value = "regmirror_cache", str(tmp_path / "file" / "cache")
        options = {option: value}
    else:
        option, value = "regmirror_cache_max_size", "lots"
        options = {"regmirror_cache": str(tmp_path / "cache"), option: value}
    upstream = f"http://127.0.0.1:{free_port()}"  # never contacted
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{upstream}"\n')
    mirror = Mirror(tmp_path / "mirror", upstream, {"regmirror_config": str(cfg), **options})
    mirror.confdir.mkdir(parents=True)
    try:
        done = subprocess.run(mirror.args, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:  # run() has killed it
        done = None
    if done is None:
        pytest.fail(f"mitmdump still running {STARTUP_TIMEOUT} s after start with {option}={value}")
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert [line for line in said.splitlines() if option in line and value in line], said


def test_concurrent_misses_for_one_blob_make_one_upstream_request(
    mirror_factory, tmp_path, upstream_factory, cache_backend
):
    """Single flight: 8 clients ask for one cold 64 MiB blob at once; one upstream GET, and
    the others get the bytes as the file grows, each checked."""
    import asyncio

    from bench.blobs import Pusher

    up = upstream_factory(repos=[])
    access = [{"type": "repository", "name": "library/wide", "actions": ["pull", "push"]}]
    with Pusher(up.registry.url, up.token_server.issue_token("pusher", access=access)) as p:
        blob = p.blob("library/wide", 64 << 20, 5)
    mirror = cache_mirror(mirror_factory, tmp_path, up.url, cache_backend)
    path = f"/v2/library/wide/blobs/{blob.digest}"
    with httpx.Client(base_url=mirror.url, timeout=60) as c:
        auth = mirror_token(c, "library/wide")
    log = UpstreamLog(up.registry)
    start = log.mark()

    async def pull(client: httpx.AsyncClient) -> str:
        h = hashlib.sha256()
        async with client.stream("GET", path, headers=auth) as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes():
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    async def pull_all() -> list[str]:
        async with httpx.AsyncClient(base_url=mirror.url, timeout=60) as client:
            return await asyncio.gather(*(pull(client) for _ in range(8)))  # all at once

    assert asyncio.run(pull_all()) == [blob.digest] * 8
    end = log.mark()
    gets = [e for e in by_digest(log.between(start, end)) if e.method == "GET"]
    assert len(gets) == 1, gets

    # a client asking right after a fill ended (its commit may still be running) gets it too
    with Pusher(up.registry.url, up.token_server.issue_token("pusher", access=access)) as p:
        second = p.blob("library/wide", 64 << 20, 6)
    path = f"/v2/library/wide/blobs/{second.digest}"
    start = log.mark()
    with httpx.Client(base_url=mirror.url, timeout=60) as c:
        for _ in range(2):
            assert sha256_digest(c.get(path, headers=auth).content) == second.digest
    gets = [e for e in by_digest(log.between(start, log.mark())) if e.method == "GET"]
    assert len(gets) == 1, gets

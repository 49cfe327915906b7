"""End to end: two mirror replicas behind haproxy, sharing one cache and one
regmirror_redirect_secret (issue 13, stateless replicas).

Real parts: a fresh distribution with token auth per test as "docker.io", haproxy (Debian's
2.6) running docs/haproxy.cfg as the README shows it (tests/support/haproxy.py; a second
file adds a frontend per replica, to pin a request to one of them), the mirrors as
`mitmdump -s`, skopeo, dockerd and httpx as clients.

Where the cache lives comes from one fixture, `shared_cache`: a directory both replicas
open (SQLite WAL and flock make that supported), then a bucket of the S3 stand-in
(moto's server, tests/support/s3server.py). The data plane serves only a directory.
"""

import base64
import hashlib
import os
import signal
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.support.cache_backends import CacheBackend
from tests.support.clients import Skopeo
from tests.support.haproxy import Haproxy, served_by
from tests.support.images import BuiltImage, build_image, push, random_bytes, sha256_digest
from tests.support.mirror import Mirror
from tests.support.procs import free_port
from tests.support.tokenserver import PUSHER_CREDS
from tests.test_e2e_cache import (
    assert_logged,
    assert_stored,
    check_dir_copy,
    check_oci_copy,
    eventually,
    log_lines,
)

pytestmark = pytest.mark.e2e

SECRET = "replicas-share-this-secret"
SERVICE = "test-registry"
KILLED_LAYER = 48 << 20  # bytes: more than every buffer between a replica and a slow client


@dataclass
class Replicas:
    haproxy: Haproxy
    mirrors: list[Mirror]
    config: Path

    def pinned(self, i: int) -> str:
        """host:port that reaches replica i (0 or 1) only, through haproxy."""
        return self.haproxy.pinned[i]


@pytest.fixture
def shared_cache(cache_backend: CacheBackend) -> CacheBackend:
    """The cache of every replica: one directory, then (the same test again) one bucket."""
    return cache_backend


@pytest.fixture
def start_replicas(mirror_factory, shared_cache, tmp_path):
    """start(upstream_url, auth="", data_plane=False) -> Replicas: two mirrors with the same
    cache, secret and config file, behind haproxy. Everything is stopped after the test."""
    started: list[Haproxy] = []

    def start(upstream_url: str, auth: str = "", data_plane: bool = False) -> Replicas:
        cfg = tmp_path / "mirror.toml"
        cfg.write_text(f'[registries."docker.io"]\nurl = "{upstream_url}"\n{auth}')
        haproxy = Haproxy(tmp_path / "haproxy")
        started.append(haproxy)
        options = {
            "regmirror_config": str(cfg),
            **shared_cache.options(),
            "regmirror_redirect_secret": SECRET,
        }
        blobs = [f"127.0.0.1:{free_port()}" for _ in range(2)] if data_plane else []
        mirrors = []
        for i in range(2):
            extra = {}
            if data_plane:
                extra = {"regmirror_blob_listen": blobs[i],
                         "regmirror_blob_url": f"http://{haproxy.blob_host}"}  # fmt: skip
            mirrors.append(mirror_factory(upstream_url, {**options, **extra}))
        haproxy.start([m.host for m in mirrors], blobs)
        return Replicas(haproxy, mirrors, cfg)

    try:
        yield start
    finally:
        for haproxy in started:
            haproxy.stop()


def token(host: str, repo: str, creds: tuple[str, str] | None = None) -> str:
    """A token from the mirror's realm at `host` for pulling `repo`."""
    r = httpx.get(
        f"http://{host}/v2/auth",
        params={"service": SERVICE, "scope": f"repository:{repo}:pull"},
        auth=creds,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def get(host: str, path: str, bearer: str = "", **headers: str) -> httpx.Response:
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.get(f"http://{host}{path}", headers=headers, timeout=30)


def manifest_path(image: BuiltImage, repo: str) -> str:
    return f"/v2/{repo}/manifests/{image.digest}"


# ------------------------------------------------------------------------------------------
# the shared cache
# ------------------------------------------------------------------------------------------


def test_what_one_replica_cached_the_other_serves_with_the_upstream_down(
    start_replicas, upstream_factory, dockerd_factory, images, shared_cache, tmp_path
):
    """skopeo fills the cache through replica 1; the upstream registry stops; dockerd pulls
    the image by tag through replica 2, from the cache (the tag as stale)."""
    up = upstream_factory(repos=["library/testimg"])
    replicas = start_replicas(up.url)
    testimg = images["library/testimg"]
    out = tmp_path / "pull1"
    Skopeo(tmp_path / "skopeo").copy(f"{replicas.pinned(0)}/library/testimg:1", f"dir:{out}")
    check_dir_copy(out, testimg)
    assert_stored(shared_cache, testimg.single.digests)
    up.registry.stop()

    second = replicas.mirrors[1]
    since = len(second.log_text())
    docker = dockerd_factory(mirrors=[f"http://{replicas.pinned(1)}"])
    docker.pull("library/testimg:1")
    assert docker.image_id("library/testimg:1") == testimg.single.config.digest
    assert f"testimg@{testimg.digest}" in " ".join(docker.repo_digests("library/testimg:1"))
    assert_logged(second, since, testimg.single.digests[1:], "cache hit")  # config, layers
    assert "cache stale" in second.log_text()[since:]


def test_what_a_client_pulls_through_haproxy_is_public_to_every_replica_offline(
    start_replicas, upstream_factory, images, tmp_path
):
    """An anonymous pull through haproxy keeps its content public: haproxy spreads the
    client's requests over both replicas (`balance roundrobin`, the doc's), and the token
    one replica hands out carries how it was obtained to the other, which would else take
    it for the client's own credentials (and keep what it fills private, never served
    offline). Then, with the upstream and its token service down, each replica serves the
    whole image from the shared cache."""
    up = upstream_factory(repos=["library/multi"])
    replicas = start_replicas(up.url)
    multi = images["library/multi"]
    ref = f"library/multi@{multi.digest}"
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.copy(f"{replicas.haproxy.host}/{ref}", f"oci:{tmp_path / 'first'}:1", all=True)
    check_oci_copy(tmp_path / "first", multi)
    up.stop()
    for i in range(2):
        since = len(replicas.mirrors[i].log_text())
        skopeo.copy(f"{replicas.pinned(i)}/{ref}", f"oci:{tmp_path / f'offline{i}'}:1", all=True)
        check_oci_copy(tmp_path / f"offline{i}", multi)
        assert_logged(replicas.mirrors[i], since, multi.blob_digests(), "cache hit")


def big_image(tmp_path: Path, up) -> BuiltImage:
    """library/huge:1, one layer of KILLED_LAYER random bytes, pushed to `up`."""
    image = build_image(tmp_path / "huge", [{"huge.bin": random_bytes(KILLED_LAYER, 13)}],
                        gzip_level=1)  # fmt: skip
    push(image, f"{up.registry.host}/library/huge:1", tmp_path / "push-huge", PUSHER_CREDS)
    return image


def test_a_replica_killed_during_a_pull_loses_nothing_and_the_next_pull_succeeds(
    start_replicas, upstream_factory, images, shared_cache, tmp_path
):
    """A slow client reads a cold blob through haproxy; the replica that serves it (and
    fills it) is killed with SIGKILL half way. The client's transfer breaks, nothing partial
    is kept or served, and the next pull through haproxy (the other replica) succeeds."""
    up = upstream_factory(repos=[])
    huge = big_image(tmp_path, up)
    layer = huge.single.layers[0]
    replicas = start_replicas(up.url)
    h = replicas.haproxy
    bearer = token(h.host, "library/huge")
    got = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", h.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # a slow reader's
        request = (f"GET /v2/library/huge/blobs/{layer.digest} HTTP/1.1\r\nHost: {h.host}\r\n"
                   f"Authorization: Bearer {bearer}\r\n\r\n")  # fmt: skip
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        head, _, body = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        name = next(line.split(b": ", 1)[1].decode() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"x-regmirror-replica:"))  # fmt: skip
        victim = replicas.mirrors[int(name.removeprefix("replica")) - 1]
        received = len(body)
        got.update(body)
        while received < 4 << 20:
            chunk = sock.recv(64 << 10)
            assert chunk, "the transfer ended early"
            received += len(chunk)
            got.update(chunk)
            time.sleep(0.001)
        os.kill(victim.pid, signal.SIGKILL)
        sock.settimeout(30)
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    assert received < layer.size, "the whole blob came before the kill: nothing was tested"
    assert shared_cache.stored(layer.digest) is None

    survivor = replicas.mirrors[1 - replicas.mirrors.index(victim)]
    h.wait_up(1)
    since = len(survivor.log_text())
    out = tmp_path / "after"
    Skopeo(tmp_path / "skopeo").copy(f"{h.host}/library/huge:1", f"dir:{out}")
    check_dir_copy(out, huge)
    assert_stored(shared_cache, huge.single.digests)
    assert_logged(survivor, since, [layer.digest], "200")


# ------------------------------------------------------------------------------------------
# what one replica signs, the other accepts
# ------------------------------------------------------------------------------------------


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    path.write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        for u, p in users.items()
    ))  # fmt: skip


def test_a_client_auth_token_from_one_replica_is_accepted_by_the_other_until_revoked(
    start_replicas, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    write_htpasswd(tmp_path / "htpasswd", {"bob": "s3cret", "carol": "c4rol"})
    replicas = start_replicas(up.url, auth='[auth]\nhtpasswd = "htpasswd"\n')
    one, two = replicas.pinned(0), replicas.pinned(1)
    testimg = images["library/testimg"]
    path = manifest_path(testimg, "library/testimg")
    bob = token(one, "library/testimg", ("bob", "s3cret"))
    carol = token(one, "library/testimg", ("carol", "c4rol"))
    assert bob.startswith("regmirror-client.")
    for host in (one, two):
        r = get(host, path, bob, Accept=testimg.media_type)
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == testimg.digest
        assert sha256_digest(r.content) == testimg.digest
    assert get(two, path, "regmirror-client.forged.x").status_code == 401
    # skopeo through haproxy, which balances
    out = tmp_path / "pulled"
    Skopeo(tmp_path / "skopeo").copy(f"{replicas.haproxy.host}/library/testimg:1",
                                     f"dir:{out}", creds="bob:s3cret")  # fmt: skip
    check_dir_copy(out, testimg)

    # bob is removed and carol's password changes: both replicas reload and refuse them
    write_htpasswd(tmp_path / "htpasswd", {"carol": "new password"})
    later = time.time() + 5
    os.utime(replicas.config, (later, later))  # the config file's change triggers the reload

    def all_refused() -> bool:
        return all(get(host, path, bearer, Accept=testimg.media_type).status_code == 401
                   for host in (one, two) for bearer in (bob, carol))  # fmt: skip

    eventually(all_refused, lambda: "a replica still accepts a revoked token", timeout=15)
    fresh = token(two, "library/testimg", ("carol", "new password"))
    assert get(one, path, fresh, Accept=testimg.media_type).status_code == 200


@pytest.mark.parametrize("cache_backend", ["disk"], indirect=True)  # the data plane's
def test_a_signed_blob_url_from_one_replica_is_served_by_the_other(
    start_replicas, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/big"])
    replicas = start_replicas(up.url, data_plane=True)
    big = images["library/big"]
    layer = big.single.layers[0]
    out = tmp_path / "warm"
    Skopeo(tmp_path / "skopeo").copy(f"{replicas.pinned(0)}/library/big:1", f"dir:{out}")
    check_dir_copy(out, big)

    one = replicas.pinned(0)
    r = get(one, f"/v2/library/big/blobs/{layer.digest}", token(one, "library/big"))
    assert r.status_code == 307, r.text
    location = urllib.parse.urlsplit(r.headers["Location"])
    assert location.netloc == replicas.haproxy.blob_host
    target = f"{location.path}?{location.query}"
    # straight to replica 2's data plane, then through haproxy's data-plane frontend
    blob = httpx.get(f"http://{replicas.haproxy.blobs[1]}{target}", timeout=30)
    assert blob.status_code == 200 and sha256_digest(blob.content) == layer.digest
    assert_logged(replicas.mirrors[1], 0, [layer.digest], "via data plane -> 200 cache hit")
    seen = set()
    for _ in range(2):
        blob = httpx.get(f"http://{replicas.haproxy.blob_host}{target}", timeout=30)
        assert blob.status_code == 200 and sha256_digest(blob.content) == layer.digest
        seen.add(served_by(blob))
    assert seen == {"replica1", "replica2"}
    tampered = target.replace("&e=", "&e=9")
    assert httpx.get(f"http://{replicas.haproxy.blobs[1]}{tampered}", timeout=30).status_code == 403


def test_an_offline_token_from_one_replica_is_accepted_by_the_other(
    start_replicas, upstream_factory, images, tmp_path
):
    """With the upstream and its token service down, replica 1 signs an offline token;
    replica 2 takes it for one of the mirror's own (`offline` in its log) and serves the
    cache."""
    up = upstream_factory(repos=["library/testimg"])
    replicas = start_replicas(up.url)
    testimg = images["library/testimg"]
    out = tmp_path / "warm"
    # warmed through replica 2, so that replica 1 has no upstream token cached to share
    Skopeo(tmp_path / "skopeo").copy(f"{replicas.pinned(1)}/library/testimg:1", f"dir:{out}")
    check_dir_copy(out, testimg)
    up.stop()

    one, two = replicas.pinned(0), replicas.pinned(1)
    offline = token(one, "library/testimg")
    assert offline.startswith("regmirror-offline.")
    second = replicas.mirrors[1]
    since = len(second.log_text())
    r = get(two, manifest_path(testimg, "library/testimg"), offline, Accept=testimg.media_type)
    assert r.status_code == 200 and sha256_digest(r.content) == testimg.digest
    assert_logged(second, since, [testimg.digest], "cache hit", "offline")
    # one signed with another secret is no token of the mirror's: not said to be offline
    forged = "regmirror-offline.9999999999." + base64.urlsafe_b64encode(b"x" * 32).decode()
    since = len(second.log_text())
    r = get(two, manifest_path(testimg, "library/testimg"), forged, Accept=testimg.media_type)
    assert r.status_code == 200  # read as anonymous, which the cache serves
    eventually(lambda: bool(log_lines(second.log_text()[since:], testimg.digest, "cache hit")),
               lambda: "no log line for the second request")  # fmt: skip
    assert not log_lines(second.log_text()[since:], testimg.digest, "offline")

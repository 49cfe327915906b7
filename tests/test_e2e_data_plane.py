"""End to end: the blob data plane (issue 11). A cache hit for a blob of at least
`regmirror_blob_redirect_min` gets a 307 to a second listener of the mirror, which sends the
file with sendfile (TLS for clients that came over TLS).

Real parts: a fresh distribution with token auth per test as "docker.io" (what reached it is
counted from its access log), skopeo, podman, dockerd and ctr, the mirror as `mitmdump -s`
with `regmirror_blob_listen=127.0.0.1:0`. library/big's 8 MiB layer is over the threshold;
its config and manifest are not.

skopeo and podman (insecure) speak TLS to the mirror, so they follow the 307 to the data
plane over TLS; dockerd and ctr use plain HTTP.
"""

import hashlib
import re
import ssl
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from regmirror.cache import blob_urls
from regmirror.cache.blob_urls import Blob

from tests.support.clients import Skopeo, write_hosts_toml
from tests.support.images import BuiltImage, sha256_digest
from tests.support.mirror import Mirror
from tests.support.rawhttp import exchange, parse_responses
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_logged,
    assert_stored,
    by_digest,
    cache_mirror,
    check_dir_copy,
    eventually,
    metric,
    mirror_token,
    stored_path,
)

pytestmark = pytest.mark.e2e

SECRET = "data-plane-test-secret"
LISTENING = re.compile(r"blob data plane listening on 127\.0\.0\.1:(\d+)")
# client -> whether it follows the 307 over TLS: skopeo and podman (insecure) try HTTPS first
# and the mirror answers it, so their base URL is https://
CLIENTS = {"skopeo": True, "podman": True, "dockerd": False, "ctr": False}


def data_plane_mirror(mirror_factory, tmp_path: Path, upstream_url: str, **options) -> Mirror:
    return cache_mirror(
        mirror_factory,
        tmp_path,
        upstream_url,
        regmirror_blob_listen="127.0.0.1:0",
        regmirror_redirect_secret=SECRET,
        **options,
    )


def data_plane_port(mirror: Mirror) -> int:
    found: list[int] = []

    def listening() -> bool:
        found[:] = [int(m[1]) for m in LISTENING.finditer(mirror.log_text())]
        return bool(found)

    eventually(listening, lambda: "the mirror never said where its data plane listens")
    return found[0]


def warm(mirror: Mirror, image: BuiltImage, tmp_path: Path) -> None:
    """One skopeo pull through the mirror fills its cache with the image."""
    out = tmp_path / "warm"
    Skopeo(tmp_path / "skopeo-warm").copy(f"{mirror.host}/library/big:1", f"dir:{out}")
    check_dir_copy(out, image)
    assert_stored(tmp_path / "cache", image.single.digests)


def pull_with(client: str, request, mirror: Mirror, image: BuiltImage, tmp_path: Path) -> None:
    """`client` pulls library/big:1 through `mirror`, and the image it got is checked."""
    config = image.single.config.digest
    if client == "skopeo":
        out = tmp_path / "pulled"
        Skopeo(tmp_path / "skopeo").copy(f"{mirror.host}/library/big:1", f"dir:{out}")
        check_dir_copy(out, image)
    elif client == "podman":
        podman = request.getfixturevalue("podman_factory")(mirror=mirror.host)
        podman.pull("docker.io/library/big:1")
        info = podman.inspect("docker.io/library/big:1")
        assert info["Id"] == config.removeprefix("sha256:")
        assert any(d.endswith(f"@{image.digest}") for d in info["RepoDigests"]), info
    elif client == "dockerd":
        daemon = request.getfixturevalue("dockerd_factory")(mirrors=[mirror.url])
        daemon.pull("library/big:1")
        assert daemon.image_id("library/big:1") == config
        assert f"big@{image.digest}" in " ".join(daemon.repo_digests("library/big:1"))
    else:
        containerd, hosts_dir = (request.getfixturevalue(f) for f in ("containerd", "hosts_dir"))
        write_hosts_toml(hosts_dir, "docker.io", mirror.url)
        ns = containerd.new_namespace()
        containerd.pull("docker.io/library/big:1", hosts_dir, namespace=ns)
        assert containerd.image_digest("docker.io/library/big:1", namespace=ns) == image.digest
        assert containerd.content_digests(namespace=ns) >= set(image.single.digests)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_cached_image_is_pulled_through_the_data_plane(
    client, request, mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/big"])
    mirror = data_plane_mirror(mirror_factory, tmp_path, up.url)
    port = data_plane_port(mirror)
    big = images["library/big"]
    layer, config = big.single.layers[0], big.single.config
    assert layer.size >= 1 << 20 > config.size
    warm(mirror, big, tmp_path)

    upstream = UpstreamLog(up.registry)
    log_start = len(mirror.log_text())
    served = metric(mirror, "regmirror_served_bytes_total", operation="blob", source="cache")
    start = upstream.mark()
    pull_with(client, request, mirror, big, tmp_path)
    assert by_digest(upstream.between(start, upstream.mark())) == []

    # the layer came from the data plane after a 307 on the mirror's port (over TLS for the
    # clients of the mirror's TLS); the config, under the threshold, from the mirror's port
    assert_logged(mirror, log_start, [layer.digest], f"-> 307 127.0.0.1:{port} by data plane")
    via = "via data plane (TLS)" if CLIENTS[client] else "via data plane"
    assert_logged(mirror, log_start, [layer.digest], f"{via} -> 200 cache hit 8.4 MB")
    text = mirror.log_text()[log_start:]
    config_lines = [line for line in text.splitlines() if config.digest[:19] in line]
    assert config_lines and all("data plane" not in line for line in config_lines), config_lines
    assert any("-> 200 cache hit" in line for line in config_lines), config_lines
    now = metric(mirror, "regmirror_served_bytes_total", operation="blob", source="cache")
    assert now - served >= layer.size  # the data plane's bytes, counted with their route
    route = {"route": up.url, "operation": "blob", "source": "cache"}
    assert metric(mirror, "regmirror_served_bytes_total", **route) >= layer.size


# ------------------------------------------------------------------------------------------
# what the data plane answers, and what it refuses
# ------------------------------------------------------------------------------------------


def raw(port: int, method: str, target: str) -> tuple[list[int], bytes, dict[str, str]]:
    """One request on a kept-alive connection: the statuses, the bytes after the answers'
    heads (for HEAD there must be none), and the first answer's headers."""
    request = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    answer = exchange(port, request, head=method == "HEAD")
    responses, rest = parse_responses(answer.data, head=method == "HEAD")
    return [r.status for r in responses], rest, responses[0].headers if responses else {}


def error_code(r: httpx.Response) -> str:
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    return r.json()["errors"][0]["code"]


def test_the_data_plane_serves_valid_signatures_only(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/big"])
    mirror = data_plane_mirror(mirror_factory, tmp_path, up.url)
    port = data_plane_port(mirror)
    big = images["library/big"]
    layer, config = big.single.layers[0], big.single.config
    data = big.read_blob(layer.digest)
    blob_path = f"/v2/library/big/blobs/{layer.digest}"
    warm(mirror, big, tmp_path)
    upstream = UpstreamLog(up.registry)

    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        auth = mirror_token(c, "library/big")
        start = upstream.mark()
        redirect = c.get(blob_path, headers=auth)
        head = c.head(blob_path, headers=auth)  # HEADs stay on the mirror's port
        small = c.get(f"/v2/library/big/blobs/{config.digest}", headers=auth)
        manifest = c.get(
            f"/v2/library/big/manifests/{big.digest}",
            headers=auth | {"Accept": big.single.manifest.media_type},
        )
    assert redirect.status_code == 307, redirect.text
    location = redirect.headers["Location"]
    u = urllib.parse.urlsplit(location)
    assert (u.scheme, u.netloc, u.path) == ("http", f"127.0.0.1:{port}", f"/blobs/{layer.digest}")
    assert (head.status_code, int(head.headers["Content-Length"])) == (200, layer.size)
    assert small.status_code == 200 and sha256_digest(small.content) == config.digest
    assert manifest.status_code == 200 and sha256_digest(manifest.content) == big.digest

    signed = dict(urllib.parse.parse_qsl(u.query))
    other_digest = "sha256:" + hashlib.sha256(b"never cached").hexdigest()
    expired = blob_urls.sign(
        Blob(layer.digest, "docker.io", "library/big", up.url, "x", layer.size),
        SECRET.encode(),
        time.time() - blob_urls.TTL - 5,
    )
    unknown = blob_urls.sign(
        Blob(other_digest, "docker.io", "library/big", up.url, "x", 10),
        SECRET.encode(),
        time.time(),
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as dp:
        got = dp.get(location)
        part = dp.get(location, headers={"Range": "bytes=1048576-2097151"})
        heads = raw(port, "HEAD", f"{u.path}?{u.query}")
        forged = dp.get(u.path, params=signed | {"s": "A" * 43})
        renamed = dp.get(u.path, params=signed | {"n": "library/other"})
        wrong_digest = dp.get(f"/blobs/{config.digest}", params=signed)
        late = dp.get(expired)
        missing = dp.get(unknown)
        unsigned = dp.get(u.path)
        post = dp.post(location)
        elsewhere = dp.get("/v2/")
        # a file changed on disk since it was verified: hashed again, dropped, never served
        stored = stored_path(tmp_path / "cache", layer.digest)
        stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        corrupted = dp.get(location)
        gone = dp.get(location)
        assert not stored.exists()
    assert by_digest(upstream.between(start, upstream.mark())) == []  # nothing went upstream

    assert got.status_code == 200 and got.content == data
    assert int(got.headers["Content-Length"]) == layer.size
    assert got.headers["Docker-Content-Digest"] == layer.digest
    assert got.headers["ETag"] == f'"{layer.digest}"'
    assert got.headers["Content-Type"] == head.headers["Content-Type"]
    assert part.status_code == 206 and part.content == data[1048576:2097152]
    assert part.headers["Content-Range"] == f"bytes 1048576-2097151/{layer.size}"
    assert heads[:2] == ([200], b"")  # HEAD: nothing after the head
    assert int(heads[2]["content-length"]) == layer.size
    for refused in (forged, renamed, wrong_digest, late, unsigned):
        assert (refused.status_code, error_code(refused)) == (403, "DENIED"), refused.text
    assert "expired" in late.json()["errors"][0]["message"]
    for refused in (missing, corrupted, gone):
        assert (refused.status_code, error_code(refused)) == (404, "BLOB_UNKNOWN")
    assert post.status_code == 405 and elsewhere.status_code == 404

    text = mirror.log_text()
    short = f"docker.io/library/big@{layer.digest[:19]}… via data plane"
    for ending in ("-> 200 cache hit 8.4 MB", "-> 206 cache hit 1.0 MB", "-> 404 BLOB_UNKNOWN"):
        assert f"pull blob {short} {ending}" in text, ending
    assert f"check blob {short} -> 200 cache hit" in text
    assert f"request GET /blobs/{layer.digest} via data plane -> 403 DENIED (blob URL expired)" in (
        text
    )
    assert "-> 403 DENIED (bad blob URL signature)" in text
    assert f"cache file {layer.digest} is corrupted on disk: dropped" in text
    assert metric(mirror, "regmirror_cache_faults_total", kind="file") == 1


def test_tls_clients_are_sent_to_the_data_plane_over_tls(
    mirror_factory, upstream_factory, images, tmp_path
):
    """A client of the mirror's TLS gets an https URL, and the data plane presents a
    certificate from the mirror's own CA (mitmproxy's, in its confdir) for the address."""
    up = upstream_factory(repos=["library/big"])
    mirror = data_plane_mirror(mirror_factory, tmp_path, up.url)
    port = data_plane_port(mirror)
    big = images["library/big"]
    layer = big.single.layers[0]
    warm(mirror, big, tmp_path)
    trusted = ssl.create_default_context(cafile=mirror.confdir / "mitmproxy-ca-cert.pem")
    with httpx.Client(base_url=f"https://{mirror.host}", verify=trusted, timeout=30) as c:
        auth = mirror_token(c, "library/big")
        redirect = c.get(f"/v2/library/big/blobs/{layer.digest}", headers=auth)
        assert redirect.status_code == 307
        location = redirect.headers["Location"]
        assert location.startswith(f"https://127.0.0.1:{port}/blobs/{layer.digest}?")
        got = c.get(location)
        plain = httpx.get(location.replace("https://", "http://", 1), timeout=30)
    assert got.status_code == 200 and sha256_digest(got.content) == layer.digest
    assert plain.status_code == 200 and sha256_digest(plain.content) == layer.digest
    for via in ("via data plane (TLS) -> 200", "via data plane -> 200"):
        assert_logged(mirror, 0, [layer.digest], via)


def test_with_regmirror_tls_false_the_data_plane_refuses_tls(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/big"])
    mirror = data_plane_mirror(mirror_factory, tmp_path, up.url, regmirror_tls=False)
    port = data_plane_port(mirror)
    big = images["library/big"]
    layer = big.single.layers[0]
    warm(mirror, big, tmp_path)
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        redirect = c.get(
            f"/v2/library/big/blobs/{layer.digest}", headers=mirror_token(c, "library/big")
        )
    location = redirect.headers["Location"]
    assert location.startswith(f"http://127.0.0.1:{port}/")
    with pytest.raises(httpx.ConnectError):
        httpx.get(location.replace("http://", "https://", 1), verify=False, timeout=10)
    assert sha256_digest(httpx.get(location, timeout=30).content) == layer.digest


def test_regmirror_blob_url_is_the_base_clients_are_sent_to(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/big"])
    mirror = data_plane_mirror(
        mirror_factory, tmp_path, up.url, regmirror_blob_url="https://blobs.mirror.example:8443"
    )
    big = images["library/big"]
    warm(mirror, big, tmp_path)
    layer = big.single.layers[0]
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        redirect = c.get(
            f"/v2/library/big/blobs/{layer.digest}", headers=mirror_token(c, "library/big")
        )
    assert redirect.status_code == 307
    assert redirect.headers["Location"].startswith(
        f"https://blobs.mirror.example:8443/blobs/{layer.digest}?"
    )

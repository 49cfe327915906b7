"""The test harness works without the mirror: real upstreams, real clients."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.clients import (
    CommandError,
    Containerd,
    DockerdFactory,
    Podman,
    Skopeo,
    write_hosts_toml,
)
from tests.support.images import OCI_INDEX, BuiltImage, sha256_digest
from tests.support.mirror import Mirror
from tests.support.procs import StartupError, wait_until
from tests.support.redirector import Redirector
from tests.support.registry import Registry, start_proxy_registry
from tests.support.tokenserver import ALICE, ALICE_CREDS, TokenServer
from tests.support.upstream import UpstreamFactory

pytestmark = pytest.mark.e2e


def test_anonymous_inspect_of_public_image(
    registry: Registry, images: dict[str, BuiltImage], skopeo: Skopeo, clean_records: TokenServer
) -> None:
    info = skopeo.inspect(f"{registry.host}/library/testimg:1")
    image = images["library/testimg"]
    assert info["Digest"] == image.digest
    assert info["Layers"] == [layer.digest for layer in image.layers]
    raw = skopeo.inspect(f"{registry.host}/library/testimg:1", raw=True)
    assert sha256_digest(raw) == image.digest
    recs = clean_records.records()
    assert recs and all(r.user is None and not r.had_authorization for r in recs)
    assert "repository:library/testimg:pull" in recs[0].scopes


def test_private_image_needs_credentials(
    registry: Registry, images: dict[str, BuiltImage], skopeo: Skopeo, clean_records: TokenServer
) -> None:
    ref = f"{registry.host}/private/secret:1"
    with pytest.raises(CommandError) as err:
        skopeo.inspect(ref)
    assert any(s in err.value.stderr.lower() for s in ("denied", "unauthorized", "401"))
    with pytest.raises(CommandError):
        skopeo.inspect(ref, creds="alice:wrong")
    info = skopeo.inspect(ref, creds=ALICE_CREDS)
    assert info["Digest"] == images["private/secret"].digest
    recs = clean_records.records()
    assert [r.status for r in recs if r.had_authorization and r.user is None] == [401]
    ok = [r for r in recs if r.user == "alice"]
    assert ok and ok[0].granted == [
        {"type": "repository", "name": "private/secret", "actions": ["pull"]}
    ]
    assert all("wonderland" not in json.dumps(r.params) for r in recs)


def test_token_server_records_several_scopes(token_server: TokenServer) -> None:
    token_server.clear()
    scopes = ["repository:library/testimg:pull", "repository:testimg:pull"]
    params = [("service", token_server.service), *(("scope", s) for s in scopes)]
    body = httpx.get(token_server.realm, params=params).json()
    assert set(body) >= {"token", "access_token", "expires_in", "issued_at"}
    (rec,) = token_server.records()
    assert rec.scopes == scopes and rec.param("scope") == scopes
    claims = token_server.decode(body["token"])
    assert claims["aud"] == "test-registry"
    assert {a["name"] for a in claims["access"]} == {"library/testimg", "testimg"}
    # OAuth2 form with refresh token
    form = {
        "grant_type": "password", "username": "alice", "password": "wonderland",
        "service": token_server.service, "scope": "repository:private/secret:pull",
        "access_type": "offline", "client_id": "test",
    }  # fmt: skip
    answer = httpx.post(token_server.realm, data=form).json()
    assert "refresh_token" in answer
    again = httpx.post(
        token_server.realm,
        data={"grant_type": "refresh_token", "refresh_token": answer["refresh_token"],
              "service": token_server.service, "scope": "repository:private/secret:pull"},
    )  # fmt: skip
    assert token_server.decode(again.json()["token"])["sub"] == "alice"


def test_copy_all_of_multiarch_index(
    registry: Registry, images: dict[str, BuiltImage], skopeo: Skopeo, tmp_path: Path
) -> None:
    image = images["library/multi"]
    dest = tmp_path / "oci"
    skopeo.copy(f"{registry.host}/library/multi:1", f"oci:{dest}:1", all=True)
    index = json.loads((dest / "index.json").read_text())
    (top,) = index["manifests"]
    assert top["digest"] == image.digest and top["mediaType"] == OCI_INDEX
    on_disk = {"sha256:" + p.name for p in (dest / "blobs" / "sha256").iterdir()}
    assert on_disk == image.blob_digests()
    for digest in on_disk:
        data = (dest / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        assert sha256_digest(data) == digest
    assert skopeo.cache_dir.is_dir()  # isolated blob-info cache, not /var/lib/containers


def test_redirector_sends_blobs_to_blob_server(
    redirector: Redirector, token_server: TokenServer, images: dict[str, BuiltImage]
) -> None:
    layer = images["library/big"].layers[0]
    path = f"/v2/library/big/blobs/{layer.digest}"
    redirector.clear()
    with httpx.Client(timeout=30) as client:
        challenge = client.get(redirector.url + path)
        assert challenge.status_code == 401
        assert "scope=" in challenge.headers["www-authenticate"]
        token = token_server.issue_token(scopes=["repository:library/big:pull"])
        bearer = {"Authorization": f"Bearer {token}"}
        for method in ("GET", "HEAD"):
            answer = client.request(method, redirector.url + path, headers=bearer)
            assert answer.status_code == 307
        location = answer.headers["location"]
        assert location.startswith(redirector.blob_url + "/blobs/")
        bad = client.get(location, headers=bearer)
        assert bad.status_code == 400 and b"<Error>" in bad.content
        head = client.head(location)
        assert head.status_code == 200 and int(head.headers["content-length"]) == layer.size
        good = client.get(location)
        assert good.status_code == 200 and len(good.content) == layer.size
        assert "sha256:" + hashlib.sha256(good.content).hexdigest() == layer.digest
        manifest = client.get(
            f"{redirector.url}/v2/library/big/manifests/1",
            headers={**bearer, "Accept": images["library/big"].media_type},
        )
        assert manifest.status_code == 200
        assert sha256_digest(manifest.content) == images["library/big"].digest
    assert [s.status for s in redirector.blob_requests.all()] == [400, 200, 200]
    assert [s.had_authorization for s in redirector.blob_requests.all()] == [True, False, False]
    assert redirector.front_requests.all()[0].status == 401


def test_skopeo_copy_through_redirector(
    redirector: Redirector, images: dict[str, BuiltImage], skopeo: Skopeo, tmp_path: Path
) -> None:
    redirector.clear()
    skopeo.copy(f"{redirector.host}/library/testimg:1", f"dir:{tmp_path / 'dir'}")
    image = images["library/testimg"]
    assert {s.status for s in redirector.blob_requests.all()} == {200}
    fetched = {s.path.removeprefix("/blobs/") for s in redirector.blob_requests.all()}
    assert fetched == {image.single.config.digest, *(x.digest for x in image.layers)}


def test_dockerd_pulls_from_plain_registry(
    dockerd_factory: DockerdFactory, plain_registry: Registry, images: dict[str, BuiltImage]
) -> None:
    daemon = dockerd_factory(insecure_registries=[plain_registry.host])
    ref = f"{plain_registry.host}/library/testimg:1"
    daemon.pull(ref)
    digest = images["library/testimg"].digest
    assert daemon.repo_digests(ref) == [f"{plain_registry.host}/library/testimg@{digest}"]
    # registry-mirrors: a Docker Hub name goes to the mirror (here: the plain registry)
    hub = dockerd_factory(mirrors=[plain_registry.url])
    hub.pull("multi:1")
    assert hub.repo_digests("multi:1") == [f"multi@{images['library/multi'].digest}"]


def test_containerd_pulls_from_plain_registry(
    containerd: Containerd,
    plain_registry: Registry,
    images: dict[str, BuiltImage],
    hosts_dir: Path,
) -> None:
    write_hosts_toml(hosts_dir, plain_registry.host, plain_registry.url, server=plain_registry.url)
    ns = containerd.new_namespace()
    ref = f"{plain_registry.host}/org/app:1"
    containerd.pull(ref, hosts_dir, namespace=ns)
    assert containerd.image_digest(ref, namespace=ns) == images["org/app"].digest
    # docker.io names via a hosts.toml mirror entry (containerd adds ?ns=docker.io)
    write_hosts_toml(hosts_dir, "docker.io", plain_registry.url)
    containerd.pull("docker.io/library/multi:1", hosts_dir, namespace=ns)
    digest = containerd.image_digest("docker.io/library/multi:1", namespace=ns)
    assert digest == images["library/multi"].digest
    assert "?ns=docker.io" in plain_registry.log_text()


def test_mirror_launcher_with_dummy_addon(
    tmp_path: Path, plain_registry: Registry, skopeo: Skopeo
) -> None:
    script = tmp_path / "dummy.py"
    script.write_text("addons = []\n")
    with Mirror(tmp_path / "m", plain_registry.url, script=script) as mirror:
        assert skopeo.inspect(f"{mirror.host}/org/app:1")["Name"].endswith("org/app")
        assert "reverse proxy to" in mirror.log_text()
    assert not mirror.proc or not mirror.proc.running()
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    # Its log holds the script's traceback on purpose: not a mirror's log (mirror*.log).
    with pytest.raises(StartupError, match="boom"):
        Mirror(tmp_path / "b", plain_registry.url, script=broken, name="broken-script").start()


def test_real_clients_follow_the_redirector(
    dockerd_factory: DockerdFactory,
    containerd: Containerd,
    redirector: Redirector,
    images: dict[str, BuiltImage],
    hosts_dir: Path,
) -> None:
    """dockerd (registry-mirrors) and ctr (hosts.toml) pull through the 307 + blob server
    without sending Authorization to it."""
    redirector.clear()
    daemon = dockerd_factory(mirrors=[redirector.url])
    daemon.pull("testimg:1")
    assert daemon.repo_digests("testimg:1") == [f"testimg@{images['library/testimg'].digest}"]
    write_hosts_toml(hosts_dir, "docker.io", redirector.url)
    ns = containerd.new_namespace()
    containerd.pull("docker.io/library/testimg:1", hosts_dir, namespace=ns)
    blob_hits = redirector.blob_requests.all()
    assert blob_hits and all(s.status == 200 and not s.had_authorization for s in blob_hits)
    assert any("ns=docker.io" in s.query for s in redirector.front_requests.all())


def test_distribution_proxy_flavour(
    tmp_path: Path, registry: Registry, images: dict[str, BuiltImage], skopeo: Skopeo
) -> None:
    proxy = start_proxy_registry(tmp_path / "proxy", registry.url, *ALICE)
    try:
        info = skopeo.inspect(f"{proxy.host}/private/secret:1")
        assert info["Digest"] == images["private/secret"].digest
        skopeo.copy(f"{proxy.host}/private/secret:1", f"dir:{tmp_path / 'out'}")
        # distribution stores a proxied blob with a second, asynchronous upstream fetch
        layer = images["private/secret"].layers[0].digest
        wait_until(lambda: proxy.has_blob(layer), 10, "proxy stores the blob")
    finally:
        proxy.stop()


def test_podman_pulls_through_registries_conf_mirror(
    podman_factory: Callable[..., Podman], plain_registry: Registry, images: dict[str, BuiltImage]
) -> None:
    podman = podman_factory(mirror=plain_registry.host)
    podman.pull("docker.io/library/testimg:1")
    digest = images["library/testimg"].digest
    assert f"docker.io/library/testimg@{digest}" in podman.repo_digests(
        "docker.io/library/testimg:1"
    )


def test_upstream_factory_gives_a_private_upstream(
    upstream_factory: UpstreamFactory, images: dict[str, BuiltImage], skopeo: Skopeo
) -> None:
    up = upstream_factory(repos=["library/testimg"], expires_in=60, redirect=True)
    digest = images["library/testimg"].digest
    assert skopeo.inspect(f"{up.host}/library/testimg:1")["Digest"] == digest
    assert up.registry.repositories() == ["library/testimg"]
    paths = [e.path for e in up.registry.access_log()]
    assert any(p.startswith("/v2/library/testimg/manifests/") for p in paths)
    assert up.token_server.records()[0].scopes == ["repository:library/testimg:pull"]
    up.registry.stop()
    with pytest.raises(CommandError):
        skopeo.inspect(f"{up.host}/library/testimg:1")

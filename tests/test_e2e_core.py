"""End to end: the mirror as users start it (`mitmdump -s addon/mirror.py`), in front of a
real distribution registry with Docker-Hub-style token auth, pulled by real clients.

The local registry stands in for Docker Hub (the internet is not reachable here): the
mirror's config points `docker.io` at it, exactly as it would point at registry-1.docker.io.
"""

import hashlib
import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest

from tests.support.certs import self_signed
from tests.support.clients import CommandError, write_hosts_toml
from tests.support.images import push
from tests.support.procs import wait_until
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

D0 = "sha256:" + "0" * 64


def sha256_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def hub_mirror(mirror_factory, tmp_path: Path, upstream_url: str, config: str = "", **options):
    """A mirror whose Docker Hub is the local upstream."""
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{upstream_url}"\n{config}')
    return mirror_factory(upstream_url, {"regmirror_config": str(cfg), **options})


@pytest.fixture
def mirror(mirror_factory, tmp_path, registry):
    return hub_mirror(mirror_factory, tmp_path, registry.url)


def test_skopeo_single_name_gets_library(mirror, skopeo, images, clean_records):
    data = skopeo.inspect(f"{mirror.host}/testimg:1")
    assert data["Digest"] == images["library/testimg"].digest
    # the client fetched its token through the mirror, for the upstream's name
    scopes = [s for r in clean_records.records() for s in r.scopes]
    assert "repository:library/testimg:pull" in scopes
    log = mirror.log_text()
    assert "token repository:library/testimg:pull -> 200" in log
    assert "pull manifest docker.io/library/testimg:1 -> 200" in log


def test_skopeo_copy_multi_arch_index(mirror, skopeo, images, tmp_path):
    multi = images["library/multi"]
    dest = tmp_path / "multi-oci"
    skopeo.copy(f"{mirror.host}/library/multi:1", f"oci:{dest}:1", all=True)
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["digest"] == multi.digest
    blobs = {p.name for p in (dest / "blobs" / "sha256").iterdir()}
    for platform in multi.platforms.values():
        for digest in platform.digests:
            assert digest.split(":")[1] in blobs


def test_skopeo_private_repository_with_credentials(mirror, skopeo, images, clean_records):
    with pytest.raises(CommandError):
        skopeo.inspect(f"{mirror.host}/private/secret:1")
    data = skopeo.inspect(f"{mirror.host}/private/secret:1", creds="alice:wonderland")
    assert data["Digest"] == images["private/secret"].digest
    assert any(r.user == "alice" for r in clean_records.records())  # docker-login creds forwarded
    assert "wonderland" not in mirror.log_text()


def test_skopeo_two_component_name_and_tags(mirror, skopeo, images):
    assert skopeo.inspect(f"{mirror.host}/org/app:1")["Digest"] == images["org/app"].digest
    assert skopeo.list_tags(f"{mirror.host}/org/app") == ["1"]


def test_http_contract(mirror, registry, images):
    digest = images["library/testimg"].digest
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        ping = c.get("/v2/")
        assert ping.status_code == 401
        assert ping.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert ping.headers["WWW-Authenticate"] == (
            f'Bearer realm="{mirror.url}/v2/auth",service="test-registry"'
        )
        m = c.get("/v2/testimg/manifests/1")
        assert m.status_code == 401
        assert m.headers["WWW-Authenticate"] == (
            f'Bearer realm="{mirror.url}/v2/auth",service="test-registry",'
            'scope="repository:library/testimg:pull"'
        )
        token = c.get(
            "/v2/auth",
            params=[("service", "test-registry"), ("scope", "repository:testimg:pull"),
                    ("scope", "repository:org/app:pull")],
        )  # fmt: skip
        assert token.status_code == 200
        auth = {"Authorization": f"Bearer {token.json()['token']}"}
        accept = {"Accept": images["library/testimg"].media_type}
        head = c.head("/v2/testimg/manifests/1", headers=auth | accept)
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == digest
        assert int(head.headers["Content-Length"]) == images["library/testimg"].single.manifest.size
        assert head.content == b""
        get = c.get(f"/v2/testimg/manifests/{digest}", headers=auth | accept)
        assert get.headers["Content-Type"] == images["library/testimg"].media_type
        assert sha256_digest(get.content) == digest
        tags = c.get("/v2/org/app/tags/list?n=1", headers=auth)
        assert tags.json() == {"name": "org/app", "tags": ["1"]}
        # the mirror refuses on its own, in the registry's error format
        for method, path, status, code in [
            ("GET", "/v2/Upper/b/manifests/1", 400, "NAME_INVALID"),
            ("GET", "/v2/testimg/manifests/bad!tag", 400, "TAG_INVALID"),
            ("GET", "/v2/testimg/blobs/sha256:short", 400, "DIGEST_INVALID"),
            ("PUT", "/v2/testimg/manifests/1", 405, "UNSUPPORTED"),
            ("POST", "/v2/testimg/blobs/uploads/", 405, "UNSUPPORTED"),
            ("GET", "/v2/quay.io/x/manifests/1?ns=ghcr.io", 404, "NAME_UNKNOWN"),
        ]:
            r = c.request(method, path)
            assert r.status_code == status, path
            assert r.json()["errors"][0]["code"] == code
        root = c.get("/")
        assert (root.status_code, root.headers["Location"]) == (301, "/v2/")
        missing = c.get(f"/v2/testimg/blobs/{D0}", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    log = mirror.log_text()
    assert token.json()["token"] not in log and "Bearer" not in log


def test_token_post_form_through_mirror(mirror, clean_records):
    r = httpx.post(
        f"{mirror.url}/v2/auth",
        data={"grant_type": "password", "username": "alice", "password": "wonderland",
              "service": "test-registry", "scope": "repository:private/secret:pull",
              "client_id": "test"},
        timeout=30,
    )  # fmt: skip
    if r.status_code == 401:
        pytest.fail("the mirror should first learn the realm by probing /v2/")
    assert r.status_code == 200, r.text
    assert "token" in r.json()
    rec = clean_records.records()[-1]
    assert (rec.method, rec.user) == ("POST", "alice")
    assert rec.scopes == ["repository:private/secret:pull"]


def unfollowed_blob_get(mirror, digest: str) -> tuple[httpx.Response, dict[str, str]]:
    """A client's GET of a blob of testimg through the mirror, its redirect not followed;
    and the client's Authorization (a token fetched through the mirror)."""
    with httpx.Client(base_url=mirror.url, timeout=30, follow_redirects=False) as c:
        token = c.get("/v2/auth", params={"scope": "repository:testimg:pull"}).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        return c.get(f"/v2/testimg/blobs/{digest}", headers=auth), auth


def test_redirected_blobs_never_carry_the_clients_token(
    mirror_factory, tmp_path, upstream_factory, skopeo, images
):
    up = upstream_factory(repos=["library/testimg", "library/multi"], redirect=True)
    # the redirect path itself: with a cache, the blob GETs after the pull would be hits
    mirror = hub_mirror(mirror_factory, tmp_path, up.url, regmirror_cache="")
    skopeo.copy(f"{mirror.host}/testimg:1", f"dir:{tmp_path / 'out'}")
    layers = [layer.digest for layer in images["library/testimg"].single.layers]
    for digest in layers:
        assert (tmp_path / "out" / digest.split(":")[1]).is_file()
    front = up.redirector.front_requests.all()
    assert any(s.status == 307 for s in front)
    blobs = up.redirector.blob_requests.all()
    assert {s.path.rsplit("/", 1)[1] for s in blobs} >= set(layers)
    assert not any(s.had_authorization for s in blobs)
    assert all(s.status == 200 for s in blobs)
    assert " via 127.0.0.1:" in mirror.log_text()  # pull blob docker.io/... via the CDN
    # the client is sent to the mirror itself, which fetches the blob for it
    r, auth = unfollowed_blob_get(mirror, layers[0])
    assert r.status_code == 307
    assert r.headers["Location"].startswith(f"{mirror.url}/_regmirror/redirect?")
    with httpx.Client(base_url=mirror.url, timeout=30, follow_redirects=False) as c:
        got = c.get(r.headers["Location"], headers=auth)
        assert got.status_code == 200
        assert sha256_digest(got.content) == layers[0]
        # HEAD stays HEAD through the signed redirect
        r = c.head(f"/v2/testimg/blobs/{layers[0]}", headers=auth)
        assert r.status_code == 307
        assert r.headers["Location"].startswith(f"{mirror.url}/_regmirror/redirect?")
        r2 = c.head(r.headers["Location"], headers=auth)
        assert r2.status_code == 200
        assert int(r2.headers["Content-Length"]) == images["library/testimg"].single.layers[0].size
        # the blob server records a request after answering it: give it a moment
        wait_until(
            lambda: up.redirector.blob_requests.all()[-1].method == "HEAD", 5, "HEAD recorded"
        )
        forged = r.headers["Location"].replace("blobs%2Fsha256", "blobs%2Fsha257")
        assert c.get(forged).status_code == 403


def test_redirects_passed_through(mirror_factory, tmp_path, upstream_factory, skopeo, images):
    up = upstream_factory(repos=["library/testimg"], redirect=True)
    mirror = hub_mirror(mirror_factory, tmp_path, up.url, regmirror_redirects="pass")
    skopeo.copy(f"{mirror.host}/testimg:1", f"dir:{tmp_path / 'out'}")
    layers = [layer.digest for layer in images["library/testimg"].single.layers]
    for digest in layers:
        assert (tmp_path / "out" / digest.split(":")[1]).is_file()
    # the client went to the blob server itself
    blobs = up.redirector.blob_requests.all()
    assert {s.path.rsplit("/", 1)[1] for s in blobs} >= set(layers)
    r, _ = unfollowed_blob_get(mirror, layers[0])
    assert r.status_code == 307
    assert r.headers["Location"].startswith(f"{up.redirector.blob_url}/blobs/{layers[0]}?sig=")
    got = httpx.get(r.headers["Location"], timeout=30)  # as clients follow: no Authorization
    assert got.status_code == 200
    assert sha256_digest(got.content) == layers[0]


def test_docker_pull_through_registry_mirrors(mirror, dockerd_factory, images):
    docker = dockerd_factory(mirrors=[mirror.url])
    docker.pull("testimg:1")  # docker.io/library/testimg:1, sent to the mirror
    digest = images["library/testimg"].digest
    assert f"testimg@{digest}" in docker.repo_digests("testimg:1")
    assert "manifest docker.io/library/testimg:1 -> 200" in mirror.log_text()


def test_ctr_pull_through_hosts_toml(mirror, containerd, hosts_dir, images):
    write_hosts_toml(hosts_dir, "docker.io", mirror.url)
    ns = containerd.new_namespace()
    containerd.pull("docker.io/library/multi:1", hosts_dir, namespace=ns)
    assert containerd.image_digest("docker.io/library/multi:1", namespace=ns) == (
        images["library/multi"].digest
    )
    assert "manifest docker.io/library/multi:1 [ns] -> 200" in mirror.log_text()


def test_unreachable_upstream_is_502_in_registry_format_even_offline(mirror_factory, tmp_path):
    from tests.support.procs import free_port

    mirror = mirror_factory(f"http://127.0.0.1:{free_port()}")
    r = httpx.get(f"{mirror.url}/v2/x/manifests/1", timeout=30)
    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    # offline: the token request gets a token of the mirror's own, which fetches nothing
    # that is not cached
    r = httpx.get(f"{mirror.url}/v2/auth?scope=repository:x:pull", timeout=30)
    assert r.status_code == 200 and r.json()["token"].startswith("regmirror-offline.")
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = httpx.get(f"{mirror.url}/v2/x/manifests/1", headers=auth, timeout=30)
    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"


def test_tls_upstream_is_verified_under_its_own_name(mirror_factory, tmp_path, images, skopeo):
    """Like registry-1.docker.io: an https upstream whose certificate the mirror verifies.
    The client speaks TLS to the mirror as `localhost` (skopeo tries HTTPS first), while the
    upstream is checked against its own name (here its IP address), not the client's."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    upstream = Registry(tmp_path / "tls-registry", "plain", tls=(cert, key), name="registry-tls")
    with upstream.start():
        push(images["org/app"], f"{upstream.host}/org/app:1", tmp_path / "push")
        trusted = mirror_factory(upstream.url, {"ssl_verify_upstream_trusted_ca": str(cert)})
        data = skopeo.inspect(f"localhost:{trusted.port}/org/app:1")
        assert data["Digest"] == images["org/app"].digest
        assert "pull manifest" in trusted.log_text()
        # verification is real: without the CA the upstream is refused
        untrusted = mirror_factory(upstream.url)
        r = httpx.get(f"{untrusted.url}/v2/org/app/manifests/1", timeout=30)
        assert r.status_code == 502
        assert "certificate" in r.json()["errors"][0]["message"].lower()


def test_docker_hub_credentials_reach_the_realm_through_the_mirror(
    mirror, dockerd_factory, images, clean_records
):
    """`docker login` to Docker Hub, then a pull of a private image via registry-mirrors."""
    docker = dockerd_factory(mirrors=[mirror.url])
    docker.set_hub_credentials("alice", "wonderland")
    docker.pull("private/secret:1")
    digest = images["private/secret"].digest
    assert f"private/secret@{digest}" in docker.repo_digests("private/secret:1")
    assert "alice" in {r.user for r in clean_records.records()}
    assert "wonderland" not in mirror.log_text()


def test_ctr_oauth2_password_grant_through_the_mirror(
    mirror, containerd, hosts_dir, images, clean_records
):
    """`ctr --user` fetches tokens with the OAuth2 POST form, via the ns route's realm."""
    write_hosts_toml(hosts_dir, "docker.io", mirror.url)
    ns = containerd.new_namespace()
    containerd.pull("docker.io/private/secret:1", hosts_dir, namespace=ns, user="alice:wonderland")
    assert containerd.image_digest("docker.io/private/secret:1", namespace=ns) == (
        images["private/secret"].digest
    )
    posts = [r for r in clean_records.records() if r.method == "POST"]
    assert posts and all(r.user == "alice" for r in posts)
    assert posts[0].scopes == ["repository:private/secret:pull"]


def test_plain_http_mirror_refuses_tls(mirror_factory, tmp_path, registry, skopeo, images):
    """regmirror_tls=false: skopeo's HTTPS attempt is refused and it falls back to HTTP."""
    # the refusal is a connection line: shown with regmirror_log_flows
    mirror = hub_mirror(
        mirror_factory, tmp_path, registry.url, regmirror_tls=False, regmirror_log_flows=True
    )
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", mirror.port), timeout=10) as sock,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(sock).do_handshake()
    assert skopeo.inspect(f"{mirror.host}/testimg:1")["Digest"] == images["library/testimg"].digest
    assert "TLS refused" in mirror.log_text()
    assert httpx.get(f"{mirror.url}/v2/", timeout=10).status_code == 401

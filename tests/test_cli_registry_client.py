"""The warm client's protocol against a registry that answers in process (httpx's mock
transport): challenge, token, digests checked. Against the real mirror:
test_e2e_cache_cli.py."""

import base64
import hashlib

import httpx
import pytest
from regmirror.cli.graph import Descriptor
from regmirror.cli.references import parse_reference
from regmirror.cli.registry_client import MANIFEST_TYPES, PullError, RegistryClient, Unreachable

MIRROR = "http://mirror.test:5000"
REALM = f"{MIRROR}/v2/auth/docker.io"
MANIFEST = b'{"schemaVersion": 2, "config": {}, "layers": []}'
LAYER = b"layer bytes" * 1000
REF = parse_reference("nginx:1")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Bearer token auth as the mirror answers it; `blob` is what a blob GET sends."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.blob = LAYER
        self.said_digest = sha(MANIFEST)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if path == "/v2/auth/docker.io":
            return httpx.Response(200, json={"token": "t0k", "expires_in": 300})
        if request.headers.get("Authorization") != "Bearer t0k":
            challenge = (
                f'Bearer realm="{REALM}",service="svc",scope="repository:library/nginx:pull"'
            )
            return httpx.Response(401, headers={"Www-Authenticate": challenge})
        if path.startswith("/v2/docker.io/library/nginx/manifests/"):
            reference = path.rsplit("/", 1)[1]
            said = reference if reference.startswith("sha256:") else self.said_digest
            headers = {"Docker-Content-Digest": said, "Content-Type": "x/manifest"}
            if reference in ("1", said):
                return httpx.Response(200, content=MANIFEST, headers=headers)
        if path == f"/v2/docker.io/library/nginx/blobs/{sha(LAYER)}":
            return httpx.Response(200, content=self.blob)
        return httpx.Response(
            404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
        )


@pytest.fixture
def registry():
    return Registry()


@pytest.fixture
def client(registry):
    c = RegistryClient(MIRROR, transport=httpx.MockTransport(registry))
    yield c
    c.close()


def test_a_pull_answers_the_challenge_with_a_token_from_its_realm_once(registry, client):
    client.ping()
    got = client.manifest(REF, "1")
    assert got == (sha(MANIFEST), "x/manifest", MANIFEST)
    advanced = []
    assert client.blob(REF, Descriptor(sha(LAYER), len(LAYER)), advanced.append) == len(LAYER)
    assert sum(advanced) == len(LAYER)
    token = [r for r in registry.seen if r.url.path == "/v2/auth/docker.io"]
    assert len(token) == 1
    assert dict(token[0].url.params) == {"scope": "repository:library/nginx:pull", "service": "svc"}
    assert "Authorization" not in token[0].headers  # anonymous
    manifest = next(r for r in registry.seen if r.headers.get("Authorization"))
    assert manifest.headers["Accept"] == ", ".join(MANIFEST_TYPES)


def test_credentials_go_to_the_realm_as_basic_auth(registry):
    c = RegistryClient(MIRROR, ("ci", "s3cret"), transport=httpx.MockTransport(registry))
    c.manifest(REF, "1")
    c.close()
    token = next(r for r in registry.seen if r.url.path == "/v2/auth/docker.io")
    assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"ci:s3cret").decode()


def test_a_manifest_that_is_not_its_digest_fails(registry, client):
    registry.said_digest = sha(b"another manifest")
    with pytest.raises(
        PullError, match=f"the manifest 1 of docker.io/library/nginx is not {registry.said_digest}"
    ):
        client.manifest(REF, "1")
    asked = sha(b"asked for this one")  # by digest: the body decides, whatever the header says
    with pytest.raises(PullError, match=f"the manifest {asked} of docker.io/library/nginx is not"):
        client.manifest(REF, asked)


@pytest.mark.parametrize(
    "body, says",
    [
        (LAYER[:-1], f"{len(LAYER) - 1} of {len(LAYER)} bytes"),
        (LAYER[:-1] + b"X", "another digest"),
    ],
)
def test_a_blob_with_other_bytes_fails(registry, client, body, says):
    registry.blob = body
    with pytest.raises(PullError, match=says):
        client.blob(REF, Descriptor(sha(LAYER), len(LAYER)), lambda n: None)


def test_registry_errors_are_said(client):
    with pytest.raises(PullError, match="manifests/2: 404 MANIFEST_UNKNOWN: manifest unknown$"):
        client.manifest(REF, "2")


def test_what_is_no_registry_is_unreachable():
    c = RegistryClient(MIRROR, transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(Unreachable, match="/v2/ answered 503: is it a registry mirror"):
        c.ping()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    c = RegistryClient(MIRROR, transport=httpx.MockTransport(refuse))
    with pytest.raises(
        Unreachable, match=f"cannot reach the mirror at {MIRROR}: Connection refused"
    ):
        c.ping()
    with pytest.raises(PullError, match="manifests/1: Connection refused"):
        c.manifest(REF, "1")

"""End to end: the security review's attacks (issue 8), replayed against real parts and
shown to fail now: distribution with token auth as docker.io, the harness's token service,
in which the route account (pusher) may push, and the mirror as `mitmdump -s`. Every test
also passes the conftest check that no mirror hook raised (no "Addon error", no traceback).
"""

import base64
import json
import urllib.parse

import bcrypt
import httpx
import pytest

from tests.support.rawhttp import error_code, send
from tests.support.tokenserver import PUSHER

pytestmark = pytest.mark.e2e

STATIC_TOKEN = "ci-token-0123456789abcdef"
ROUTE = f"""
username = "{PUSHER[0]}"
password = "{PUSHER[1]}"
deny = ["library/multi", "private/*"]
"""


def start(mirror_factory, tmp_path, registry, auth: bool, options=None):
    cfg = tmp_path / "mirror.toml"
    text = f'[registries."docker.io"]\nurl = "{registry.url}"\n{ROUTE}'
    if auth:
        bob = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
        jurgen = bcrypt.hashpw("pässwörd".encode(), bcrypt.gensalt(rounds=4)).decode()
        (tmp_path / "htpasswd").write_text(f"bob:{bob}\njürgen:{jurgen}\n")
        text += f'[auth]\nhtpasswd = "htpasswd"\ntokens = ["{STATIC_TOKEN}"]\n'
    cfg.write_text(text)
    return mirror_factory(registry.url, {"regmirror_config": str(cfg), **(options or {})})


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def basic(user: str, password: str) -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_one_undecodable_byte_no_longer_bypasses_client_auth(
    mirror_factory, tmp_path, registry, token_server, images
):
    """Finding 1: `Authorization: Bearer \\xff` answered 200 where no header got 401."""
    mirror = start(mirror_factory, tmp_path, registry, True, {"regmirror_catalog": True})
    digest = images["library/testimg"].digest.encode()
    targets = [
        b"/v2/library/testimg/manifests/1",
        b"/v2/library/testimg/manifests/" + digest,
        b"/v2/library/testimg/blobs/" + digest,
        b"/v2/_catalog",
        b"/v2/testimg/manifests/1?ns=docker.io",
    ]
    own = token_server.issue_token("pusher", scopes=["repository:library/testimg:pull"])
    for target in targets:
        for headers in (
            [b"Authorization: Bearer \xff"],
            # a token of the attacker's own from the upstream, beside the crashing header
            [b"Authorization: Bearer " + own.encode(), b"Authorization: Bearer \xff"],
        ):
            status, _, body = send(mirror.port, target, *headers)
            assert (status, error_code(body)) == (401, "UNAUTHORIZED"), (target, headers)


def test_route_credentials_give_only_pull_on_served_repositories(
    mirror_factory, tmp_path, registry, token_server, clean_records
):
    """Finding 2: an anonymous client got the route account's push, delete and refresh
    tokens, for repositories the deny list refuses."""
    mirror = start(mirror_factory, tmp_path, registry, auth=False)
    query = (
        "service=test-registry&scope=repository:private/secret:pull,push,delete"
        "&scope=repository:library/multi:pull,push&scope=repository:library/testimg:pull,push"
        "&scope=registry:catalog:*&offline_token=true"
    )
    r = httpx.get(f"{mirror.url}/v2/auth?{query}", timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "refresh_token" not in answer
    access = claims(answer["token"])["access"]
    assert access == [{"type": "repository", "name": "library/testimg", "actions": ["pull"]}]
    (record,) = token_server.records()
    assert record.user == "pusher" and record.scopes == ["repository:library/testimg:pull"]
    assert "offline_token" not in dict(record.params)
    # the token is no key to write: distribution refuses an upload with it
    upload = httpx.post(
        f"{registry.url}/v2/library/testimg/blobs/uploads/",
        headers={"Authorization": f"Bearer {answer['token']}"},
        timeout=30,
    )
    assert upload.status_code == 401
    # nothing served left: refused without asking the token service
    denied = httpx.get(
        f"{mirror.url}/v2/auth?scope=repository:private/secret:pull,push&scope=registry:catalog:*",
        timeout=30,
    )
    assert (denied.status_code, denied.json()["errors"][0]["code"]) == (403, "DENIED")
    catalog = httpx.get(f"{mirror.url}/v2/_catalog", timeout=30)
    assert (catalog.status_code, catalog.json()["errors"][0]["code"]) == (403, "DENIED")
    assert len(token_server.records()) == 1


def test_broken_credentials_never_reach_an_upstream(
    mirror_factory, tmp_path, registry, token_server, clean_records, skopeo, images
):
    """Finding 3: `Basic \\xff`, or a non-ASCII password beside static tokens, crashed the
    token endpoint, and the request went upstream with the client's mirror password."""
    mirror = start(mirror_factory, tmp_path, registry, auth=True)
    scope = b"/v2/auth?service=test-registry&scope=repository:library/testimg:pull"
    for header in (
        b"Authorization: Basic \xff",
        basic("bob", "pässwörd"),  # wrong, and not ASCII
        b"Authorization: Basic " + base64.b64encode(b"bob:\xff\xfe"),  # not UTF-8
    ):
        status, head, body = send(mirror.port, scope, header)
        assert (status, error_code(body)) == (401, "UNAUTHORIZED"), header
        assert b'WWW-Authenticate: Basic realm="regmirror"' in head
    assert token_server.records() == []
    # a user whose password is not ASCII can log in (bcrypt on UTF-8 bytes)
    digest = images["library/testimg"].digest
    assert skopeo.inspect(f"{mirror.host}/testimg:1", creds="jürgen:pässwörd")["Digest"] == digest
    assert all(r.user == "pusher" for r in token_server.records())  # the route's account


def test_malformed_inputs_get_registry_errors_without_an_upstream_attempt(
    mirror_factory, tmp_path, registry, token_server, clean_records
):
    """Finding 8 and 9: `%FF` in a token query or form, a broken redirect signature and two
    different `ns` crashed or went upstream."""
    mirror = start(mirror_factory, tmp_path, registry, auth=False)
    form = b"Content-Type: application/x-www-form-urlencoded"
    cases = [
        (b"GET", b"/v2/auth?scope=%FF", [], b"", 400),
        (b"GET", b"/v2/auth?scope=repository:a:pull%0Aforged", [], b"", 400),
        (b"GET", b"/v2/auth?service=%FF&scope=repository:library/testimg:pull", [], b"", 400),
        (b"POST", b"/v2/auth", [form], b"grant_type=password&scope=%FF", 400),
        (b"POST", b"/v2/auth", [form], b"grant_type=password&password=\xff", 400),
        (b"GET", b"/_regmirror/redirect?u=http://x/&e=99999999999&s=%C3%A9", [], b"", 403),
        (b"GET", b"/v2/testimg/manifests/1?ns=quay.io&ns=ghcr.io", [], b"", 400),
    ]
    for method, target, headers, body, expected in cases:
        status, _, content = send(mirror.port, target, *headers, method=method, body=body)
        assert status == expected, (target, body, content)
        assert "errors" in json.loads(content)
    assert token_server.records() == []


def test_metrics_need_credentials_under_client_auth(mirror_factory, tmp_path, registry):
    mirror = start(mirror_factory, tmp_path, registry, auth=True)
    url = f"{mirror.url}/_regmirror/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {STATIC_TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and "regmirror_requests_total" in ok.text
    assert httpx.get(f"{mirror.url}/_regmirror/healthz", timeout=10).status_code == 200
    missing = httpx.get(f"{mirror.url}/v2/nowhere.example/a/manifests/1?ns=x.example", timeout=10)
    assert missing.status_code == 404 and "detail" not in missing.json()["errors"][0]
    assert urllib.parse.urlsplit(registry.url).netloc not in missing.text

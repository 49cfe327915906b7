import base64
import json
from dataclasses import replace

import bcrypt
import pytest
from mitmproxy.test import taddons
from regmirror.challenge import Challenge
from regmirror.client_auth import (
    ClientAuth,
    TokenLedger,
    bearer_token,
    check_credentials,
    parse_basic,
)
from regmirror.config import ClientAuth as AuthConfig
from regmirror.router import Router
from regmirror.token_auth import NO_TOKEN_AUTH, TokenAuth

from tests.flowutil import respond, reverse_flow

HASH = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4))
AUTH = AuthConfig({"alice": HASH}, frozenset({"s" * 20}))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parsers():
    assert parse_basic(basic("a", "b:c")) == ("a", "b:c")
    for bad in (
        "",
        "Basic",
        "Basic !!!",
        "Bearer x",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ):
        assert parse_basic(bad) is None
    assert bearer_token("Bearer abc ") == "abc"
    assert bearer_token("Basic abc") == ""


def test_check_credentials():
    assert check_credentials(AUTH, "alice", "wonderland")
    assert not check_credentials(AUTH, "alice", "wrong")
    assert not check_credentials(AUTH, "bob", "wonderland")
    assert check_credentials(AUTH, "anyone", "s" * 20)


def test_ledger():
    ledger = TokenLedger()
    ledger.add("t1", 300, now=0)
    assert ledger.valid("t1", now=299) and not ledger.valid("t1", now=301)
    assert not ledger.valid("t2", now=0) and not ledger.valid("", now=0)
    ledger.add("short", 1, now=0)
    assert ledger.valid("short", now=59)  # at least a minute


def setup():
    router = Router()
    router.config = type(router.config)(auth=AUTH)
    return router, ClientAuth(router), TokenAuth(router)


async def test_unauthenticated_requests_get_the_mirrors_challenge():
    router, auth, _ = setup()
    with taddons.context(router, auth):
        f = reverse_flow("GET", "/v2/ghcr.io/org/app/manifests/1")
        router.requestheaders(f)
        await auth.requestheaders(f)
        assert f.response.status_code == 401
        assert f.response.headers["WWW-Authenticate"] == (
            'Bearer realm="http://mirror.test:5000/v2/auth/ghcr.io",service="regmirror",'
            'scope="repository:org/app:pull"'
        )
        # a token the upstream issued elsewhere is not the mirror's
        g = reverse_flow("GET", "/v2/", headers={"Authorization": "Bearer forged"})
        router.requestheaders(g)
        await auth.requestheaders(g)
        assert g.response.status_code == 401


@pytest.mark.parametrize("creds", [None, ("alice", "wrong"), ("mallory", "wonderland")])
async def test_token_endpoint_refuses_bad_credentials(creds):
    router, auth, _ = setup()
    with taddons.context(router, auth):
        headers = {"Authorization": basic(*creds)} if creds else {}
        t = reverse_flow("GET", "/v2/auth?scope=repository:nginx:pull", headers=headers)
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response.status_code == 401
        assert json.loads(t.response.content)["errors"][0]["code"] == "UNAUTHORIZED"


async def test_post_token_requests_fall_back_to_get():
    router, auth, _ = setup()
    with taddons.context(router, auth):
        t = reverse_flow("POST", "/v2/auth", content=b"grant_type=password&username=a&password=b")
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response.status_code == 404


async def test_authenticated_flow_uses_route_credentials_and_issues_tokens():
    router, auth, tokens = setup()
    hub = router.config.registries["docker.io"]
    router.config.registries["docker.io"] = replace(hub, username="mirror-account", password="pw")
    tokens.challenges["https://registry-1.docker.io"] = Challenge(
        "Bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}
    )
    with taddons.context(router, auth, tokens):
        t = reverse_flow(
            "GET",
            "/v2/auth?scope=repository:nginx:pull&account=alice&offline_token=true",
            headers={"Authorization": basic("alice", "wonderland")},
        )
        router.requestheaders(t)
        await auth.requestheaders(t)
        await tokens.requestheaders(t)
        assert t.response is None
        assert t.request.host == "auth.docker.io"
        # the client's mirror credentials were replaced by the route's
        assert t.request.headers["Authorization"] == basic("mirror-account", "pw")
        assert "account" not in t.request.query and "offline_token" not in t.request.query
        body = {"token": "T", "access_token": "T", "expires_in": 300, "refresh_token": "R"}
        respond(t, 200, {"Content-Type": "application/json"}, json.dumps(body).encode())
        auth.response(t)
        assert json.loads(t.response.content) == {
            "token": "T",
            "access_token": "T",
            "expires_in": 300,
        }

        f = reverse_flow("GET", "/v2/nginx/manifests/1", headers={"Authorization": "Bearer T"})
        router.requestheaders(f)
        await auth.requestheaders(f)
        assert f.response is None
        assert f.request.headers["Authorization"] == "Bearer T"


async def test_mirror_mints_tokens_for_upstreams_without_token_auth():
    router, auth, tokens = setup()
    tokens.challenges["http://127.0.0.1:5001"] = NO_TOKEN_AUTH
    with taddons.context(router, auth, tokens):
        t = reverse_flow(
            "GET",
            "/v2/auth?scope=repository:a/b:pull",
            upstream="http://127.0.0.1:5001",
            headers={"Authorization": basic("anyone", "s" * 20)},
        )
        router.requestheaders(t)
        await auth.requestheaders(t)
        await tokens.requestheaders(t)
        assert t.response.status_code == 200
        auth.response(t)
        token = json.loads(t.response.content)["token"]
        f = reverse_flow(
            "GET",
            "/v2/a/b/manifests/1",
            upstream="http://127.0.0.1:5001",
            headers={"Authorization": f"Bearer {token}"},
        )
        router.requestheaders(f)
        await auth.requestheaders(f)
        assert f.response is None

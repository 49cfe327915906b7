import base64
import json

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
    router.config.registries["docker.io"] = type(hub)(
        hub.key, hub.upstream, username="mirror-account", password="pw"
    )
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


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from regmirror.client_auth import MAX_TTL, MIN_TTL
from regmirror.token_auth import basic_auth

from tests.strategies import escaped_text, header_text, mitm_text, props

# Authorization headers as mitmproxy has them: bytes that are not UTF-8 surrogate-escaped.
_authorizations = st.one_of(
    header_text,
    st.builds("{} {}".format, st.sampled_from(["Basic", "basic", "Bearer", "BEARER", ""]),
              st.one_of(mitm_text, st.binary(max_size=30).map(
                  lambda b: base64.b64encode(b).decode())))
)  # fmt: skip


@props(200)
@given(_authorizations)
@example("Basic \udcff")  # b64decode of a str that is not ASCII raises ValueError
@example("Basic é")
def test_prop_parse_basic_returns_none_or_a_pair(header):
    creds = parse_basic(header)
    assert creds is None or (isinstance(creds, tuple) and all(isinstance(c, str) for c in creds))


@props(100)
@given(st.text().filter(lambda u: ":" not in u), st.text())
def test_prop_basic_credentials_round_trip(user, password):
    assert parse_basic(basic_auth(user, password)) == (user, password)


@props(100)
@given(_authorizations)
def test_prop_bearer_token_never_raises(header):
    token = bearer_token(header)
    assert token == "" or (header.lower().startswith("bearer ") and token in header)


@props(100)
@given(st.one_of(mitm_text, escaped_text), st.floats(-1e9, 1e9), st.floats(0, 4e9))
@example("\udcff", 300.0, 0.0)  # a token that is not UTF-8, from an Authorization header
def test_prop_ledger_keeps_a_token_between_min_and_max_ttl(token, ttl, now):
    ledger = TokenLedger()
    ledger.add(token, ttl, now)
    assert ledger.valid(token, now) == bool(token)
    assert ledger.valid(token, now + MIN_TTL - 1) == bool(token)
    assert not ledger.valid(token, now + MAX_TTL + 1)
    assert not ledger.valid(token + "x", now)


@props(50)  # bcrypt, even at 4 rounds, takes a millisecond
@given(st.sampled_from(["alice", "bob"]) | mitm_text, mitm_text)
@example("alice", "é")  # hmac.compare_digest on non-ASCII str raises TypeError
@example("alice", "\udcff")
@example("alice", "wonder\x00land")
def test_prop_check_credentials_answers_yes_or_no(user, password):
    assert check_credentials(AUTH, user, password) is (
        password == "s" * 20 or (user, password) == ("alice", "wonderland")
    )

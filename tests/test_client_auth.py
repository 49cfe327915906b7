import base64
import json
import time
from dataclasses import replace

import bcrypt
import pytest
from mitmproxy.test import taddons
from regmirror.auth import client_tokens
from regmirror.auth.challenge import Challenge
from regmirror.auth.client_auth import (
    ClientAuth,
    ClientTokens,
    Principal,
    bearer_token,
    check_credentials,
    parse_basic,
    still_valid,
)
from regmirror.auth.ledger import Ledger
from regmirror.auth.token_proxy import NO_TOKEN_AUTH, TokenAuth
from regmirror.routing.config import ClientAuth as AuthConfig
from regmirror.routing.router import Router

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


def test_parsers_never_raise_on_undecodable_bytes():
    # mitmproxy hands header values over with undecodable bytes as surrogates
    assert parse_basic("Basic \udcff") is None
    assert parse_basic("Basic " + base64.b64encode(b"a:\xff").decode()) is None  # not UTF-8
    assert bearer_token("Bearer \udcff") == "\udcff"
    assert Ledger(MIN_TTL, MAX_TTL).get("\udcff", now=0) is None


def test_check_credentials():
    alice = check_credentials(AUTH, "alice", "wonderland")
    assert alice == Principal("htpasswd", "alice", HASH.decode())
    assert check_credentials(AUTH, "alice", "wrong") is None
    assert check_credentials(AUTH, "bob", "wonderland") is None
    assert check_credentials(AUTH, "anyone", "s" * 20).kind == "token"


def test_non_ascii_passwords():
    auth = AuthConfig(
        {"bob": bcrypt.hashpw("pässwörd".encode(), bcrypt.gensalt(rounds=4))},
        frozenset({"tökenтокен" * 2}),
    )
    assert check_credentials(auth, "bob", "pässwörd").user == "bob"
    assert check_credentials(auth, "bob", "passwort") is None
    assert check_credentials(auth, "x", "tökenтокен" * 2).kind == "token"
    assert check_credentials(auth, "x", "tökenтокен") is None
    assert parse_basic(basic("bob", "pässwörd")) == ("bob", "pässwörd")


def test_unknown_users_cost_a_bcrypt_check_too(monkeypatch):
    checked = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checked.append(h[:7]) or real(pw, h))
    assert check_credentials(AUTH, "mallory", "wonderland") is None
    assert checked == [HASH[:7]]  # a dummy hash of the same cost


def test_ledger():
    ledger = Ledger(MIN_TTL, MAX_TTL)
    who = Principal("token", "x", "f")
    ledger.add("t1", who, 300, now=0)
    assert ledger.get("t1", now=299) == who and ledger.get("t1", now=301) is None
    assert ledger.get("t2", now=0) is None and ledger.get("", now=0) is None
    ledger.add("short", who, 1, now=0)
    assert ledger.get("short", now=59)  # at least a minute
    ledger.revoke(lambda p: p != who)
    assert ledger.get("t1", now=1) is None


def test_still_valid():
    alice = check_credentials(AUTH, "alice", "wonderland")
    token = check_credentials(AUTH, "anyone", "s" * 20)
    assert still_valid(alice, AUTH) and still_valid(token, AUTH)
    rehashed = AuthConfig({"alice": bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4))})
    assert not still_valid(alice, rehashed) and not still_valid(token, rehashed)
    assert not still_valid(alice, AuthConfig(tokens=AUTH.tokens))


def setup():
    router = Router()
    router.config = type(router.config)(auth=AUTH)
    tokens = TokenAuth(router, UpstreamConnections(), SideRequests())
    return router, ClientAuth(router, tokens.provenances), tokens


def issued(router, principal, upstream="U", provenance="anonymous", lifetime=3600):
    return client_tokens.mint(
        router.signer.key, principal, provenance, upstream, lifetime, time.time()
    )


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
        # the review's finding 1: one undecodable byte used to crash the check
        h = reverse_flow("GET", "/v2/library/x/manifests/1")
        h.request.headers["Authorization"] = "Bearer \udcff"
        router.requestheaders(h)
        await auth.requestheaders(h)
        assert h.response.status_code == 401


async def test_a_reload_revokes_removed_users_and_their_tokens():
    router, auth, _ = setup()
    with taddons.context(router, auth):
        auth.verified.add("alice:wonderland", check_credentials(AUTH, "alice", "wonderland"),
                          3600, time.time())  # fmt: skip
        T = issued(router, check_credentials(AUTH, "alice", "wonderland"))
        U = issued(router, check_credentials(AUTH, "x", "s" * 20))
        f = reverse_flow("GET", "/v2/", headers={"Authorization": f"Bearer {T}"})
        router.requestheaders(f)
        await auth.requestheaders(f)
        assert f.response is None
        router.config = type(router.config)(auth=AuthConfig(tokens=AUTH.tokens))  # alice gone
        g = reverse_flow("GET", "/v2/", headers={"Authorization": f"Bearer {T}"})
        router.requestheaders(g)
        await auth.requestheaders(g)
        assert g.response.status_code == 401
        t = reverse_flow(
            "GET", "/v2/auth?scope=repository:a/b:pull",
            headers={"Authorization": basic("alice", "wonderland")},
        )  # fmt: skip
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response.status_code == 401
        u = reverse_flow("GET", "/v2/", headers={"Authorization": f"Bearer {U}"})
        router.requestheaders(u)
        await auth.requestheaders(u)
        assert u.response is None  # the static token is still configured


@pytest.mark.parametrize(
    "header",
    [None, basic("alice", "wrong").encode(), basic("mallory", "wonderland").encode(),
     b"Basic \xff", b"Basic \xff\xfe==", b"Basic " + base64.b64encode(b"alice:\xff")],
)  # fmt: skip
async def test_token_endpoint_refuses_bad_credentials(header):
    router, auth, _ = setup()
    with taddons.context(router, auth):
        t = reverse_flow("GET", "/v2/auth?scope=repository:nginx:pull")
        if header:
            t.request.headers.fields += ((b"Authorization", header),)
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
        tokens.response(t)
        ClientTokens(auth).response(t)
        answer = json.loads(t.response.content)
        assert answer.keys() == {"token", "access_token", "expires_in"}  # no refresh token
        assert answer["expires_in"] == 300 and answer["token"] == answer["access_token"]
        mine = answer["token"]
        assert client_tokens.is_client_token(mine) and mine != "T"
        claims = client_tokens.open_token(router.signer.key, mine, time.time())
        assert (claims.user, claims.upstream, claims.provenance) == ("alice", "T", "route")

        f = reverse_flow(
            "GET", "/v2/nginx/manifests/1", headers={"Authorization": f"Bearer {mine}"}
        )
        router.requestheaders(f)
        await auth.requestheaders(f)
        assert f.response is None
        # the upstream gets its own token, and the cache the signed provenance
        assert f.request.headers["Authorization"] == "Bearer T"
        assert tokens.provenances.of("Bearer T", time.time()) == "route"
        # the upstream's token itself is not a ticket into the mirror
        g = reverse_flow("GET", "/v2/nginx/manifests/1", headers={"Authorization": "Bearer T"})
        router.requestheaders(g)
        await auth.requestheaders(g)
        assert g.response.status_code == 401


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
        tokens.response(t)
        ClientTokens(auth).response(t)
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
from regmirror.auth.client_auth import MAX_TTL, MIN_TTL
from regmirror.auth.token_proxy import basic_auth
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

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
    ledger, who = Ledger(MIN_TTL, MAX_TTL), Principal("token", "x", "f")
    ledger.add(token, who, ttl, now)
    assert (ledger.get(token, now) == who) == bool(token)
    assert (ledger.get(token, now + MIN_TTL - 1) == who) == bool(token)
    assert ledger.get(token, now + MAX_TTL + 1) is None
    assert ledger.get(token + "x", now) is None


@props(50)  # bcrypt, even at 4 rounds, takes a millisecond
@given(st.sampled_from(["alice", "bob"]) | mitm_text, mitm_text)
@example("alice", "é")  # hmac.compare_digest on non-ASCII str raises TypeError
@example("alice", "\udcff")
@example("alice", "wonder\x00land")
def test_prop_check_credentials_answers_yes_or_no(user, password):
    assert (check_credentials(AUTH, user, password) is not None) is (
        password == "s" * 20 or (user, password) == ("alice", "wonderland")
    )

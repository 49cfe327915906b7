import json
import time
import urllib.parse
from dataclasses import replace

import pytest
from mitmproxy.test import taddons
from regmirror.auth import offline_tokens, token_answers, token_cache, token_proxy
from regmirror.auth.token_proxy import TokenAuth, mirror_challenge
from regmirror.record import outcome
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

HUB_CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'


def test_mirror_challenge():
    header = HUB_CHALLENGE + ',scope="repository:library/a:pull,push",error="insufficient_scope"'
    learned, client = mirror_challenge(header, "https://m.example/v2/auth")
    assert learned.params["realm"] == "https://auth.docker.io/token"
    assert client == (
        'Bearer realm="https://m.example/v2/auth",service="registry.docker.io",'
        'scope="repository:library/a:pull,push",error="insufficient_scope"'
    )
    assert mirror_challenge('Basic realm="Registry"', "http://m") is None
    for bad in ("", "Bearer", 'Bearer realm="/relative"', 'Bearer realm="x'):
        with pytest.raises(ValueError):
            mirror_challenge(bad, "http://m")


def addons():
    router = Router()
    return router, TokenAuth(router, UpstreamConnections(), SideRequests())


async def test_ping_challenge_rewritten_and_learned():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/")
        router.requestheaders(f)
        respond(f, 401, {"WWW-Authenticate": HUB_CHALLENGE})
        auth.responseheaders(f)
        auth.response(f)
        assert f.response.status_code == 401
        assert f.response.headers["WWW-Authenticate"] == (
            'Bearer realm="http://mirror.test:5000/v2/auth",service="registry.docker.io"'
        )
        assert f.response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"

        # the token request then goes to the learned realm without probing
        t = reverse_flow("GET", "/v2/auth?service=registry.docker.io&scope=repository:nginx:pull")
        t.request.headers["Authorization"] = "Basic dTpw"
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response is None
        assert t.request.url == (
            "https://auth.docker.io/token?service=registry.docker.io"
            "&scope=repository%3Alibrary%2Fnginx%3Apull"
        )
        assert t.request.host_header == "auth.docker.io"
        assert t.request.headers["Authorization"] == "Basic dTpw"


async def test_token_post_form():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(f)
        respond(f, 401, {"WWW-Authenticate": HUB_CHALLENGE + ',scope="repository:library/n:pull"'})
        auth.responseheaders(f)
        t = reverse_flow(
            "POST",
            "/v2/auth",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=b"grant_type=password&username=u&password=p&scope=repository%3Anginx%3Apull"
            b"&service=registry.docker.io",
        )
        router.requestheaders(t)
        await auth.requestheaders(t)
        auth.request(t)
        assert t.request.method == "POST"
        assert t.request.url == "https://auth.docker.io/token"
        assert dict(urllib.parse.parse_qsl(t.request.text)) == {
            "grant_type": "password",
            "username": "u",
            "password": "p",
            "scope": "repository:library/nginx:pull",
            "service": "registry.docker.io",
        }


async def test_token_request_probes_once_when_realm_unknown(monkeypatch):
    router, auth = addons()
    calls = []

    class FakeResponse:
        status_code = 401
        headers = {"WWW-Authenticate": HUB_CHALLENGE}

    async def fake_get(url):
        calls.append(url)
        return FakeResponse()

    with taddons.context(router, auth, UpstreamConnections()):
        for _ in range(2):
            t = reverse_flow("GET", "/v2/auth?scope=repository:a/b:pull")
            router.requestheaders(t)
            auth.side._client = type("C", (), {"get": staticmethod(fake_get)})()
            await auth.requestheaders(t)
            assert t.request.host == "auth.docker.io"
        assert calls == ["https://registry-1.docker.io/v2/"]
        auth.side._client = None


async def test_token_request_with_unreachable_upstream_gets_an_offline_token():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()) as tctx:
        tctx.options.regmirror_upstream_timeout = 2
        t = reverse_flow("GET", "/v2/auth?scope=x", upstream="http://127.0.0.1:9")
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response.status_code == 200
        token = json.loads(t.response.content)["token"]
        assert offline_tokens.valid(router.signer.key, token, time.time())
        assert "127.0.0.1:9" in outcome(t)["offline"]


def test_other_401s_keep_scope_and_error():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(f)
        upstream = (
            HUB_CHALLENGE + ',scope="repository:library/nginx:pull",error="insufficient_scope"'
        )
        respond(f, 401, {"WWW-Authenticate": upstream})
        auth.responseheaders(f)
        assert f.response.headers["WWW-Authenticate"] == (
            'Bearer realm="http://mirror.test:5000/v2/auth",service="registry.docker.io",'
            'scope="repository:library/nginx:pull",error="insufficient_scope"'
        )
        assert "Docker-Distribution-Api-Version" not in f.response.headers


@pytest.mark.parametrize(
    "header",
    [None, 'Bearer realm="broken', "Bearer service=x", 'Bearer realm="http://[169.254.169.254/"'],
)
def test_broken_challenge_is_502(header):
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(f)
        respond(f, 401, {"WWW-Authenticate": header} if header else {}, b"{}")
        auth.responseheaders(f)
        auth.response(f)
        assert f.response.status_code == 502
        assert json.loads(f.response.content)["errors"][0]["code"] == "UNAVAILABLE"


def test_basic_challenge_passes_through():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/")
        router.requestheaders(f)
        respond(f, 401, {"WWW-Authenticate": 'Basic realm="r"'})
        auth.responseheaders(f)
        auth.response(f)
        assert f.response.status_code == 401
        assert f.response.headers["WWW-Authenticate"] == 'Basic realm="r"'


def test_token_answer_returned_unchanged():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        t = reverse_flow("GET", "/v2/auth?scope=x")
        router.requestheaders(t)
        respond(t, 401, {"WWW-Authenticate": "Basic"}, b'{"details":"incorrect username"}')
        auth.responseheaders(t)
        auth.response(t)
        assert t.response.status_code == 401
        assert t.response.headers["WWW-Authenticate"] == "Basic"
        assert t.response.content == b'{"details":"incorrect username"}'


async def test_route_credentials_only_when_the_client_sends_none():
    router, auth = addons()
    hub = router.config.registries["docker.io"]
    router.config.registries["docker.io"] = replace(hub, username="mirror-bot", password="pw")
    auth.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    with taddons.context(router, auth, UpstreamConnections()):
        anonymous = reverse_flow("GET", "/v2/auth?scope=repository:nginx:pull")
        router.requestheaders(anonymous)
        await auth.requestheaders(anonymous)
        assert anonymous.request.headers["Authorization"] == "Basic bWlycm9yLWJvdDpwdw=="
        own = reverse_flow(
            "GET", "/v2/auth?scope=repository:a/b:pull", headers={"Authorization": "Basic dTpw"}
        )
        router.requestheaders(own)
        await auth.requestheaders(own)
        assert own.request.headers["Authorization"] == "Basic dTpw"  # docker login wins
        # never on registry requests themselves (blobs, redirects)
        blob = reverse_flow("GET", "/v2/nginx/blobs/sha256:" + "a" * 64)
        router.requestheaders(blob)
        await auth.requestheaders(blob)
        assert "Authorization" not in blob.request.headers


def with_route_account(router, **policy):
    hub = router.config.registries["docker.io"]
    router.config.registries["docker.io"] = replace(
        hub, username="mirror-bot", password="pw", **policy
    )


async def test_token_requests_ask_only_for_pull_on_served_repositories():
    """The review's finding 2: route credentials with push rights, a deny list, no [auth]."""
    router, auth = addons()
    with_route_account(router, deny=("library/ubuntu", "private/*"))
    auth.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    with taddons.context(router, auth, UpstreamConnections()):
        t = reverse_flow(
            "GET",
            "/v2/auth?service=registry.docker.io&scope=repository:private/secret:pull,push,delete"
            "&scope=repository:library/ubuntu:pull,push&scope=registry:catalog:*"
            "&scope=repository:org/app:pull,push&offline_token=true",
        )
        router.requestheaders(t)
        await auth.requestheaders(t)
        assert t.response is None
        assert t.request.query.get_all("scope") == ["repository:org/app:pull"]
        assert "offline_token" not in t.request.query
        assert t.request.headers["Authorization"] == "Basic bWlycm9yLWJvdDpwdw=="

        denied = reverse_flow(
            "GET", "/v2/auth?scope=repository:private/secret:pull&scope=repository:a/b:push"
        )
        router.requestheaders(denied)
        await auth.requestheaders(denied)
        assert denied.response.status_code == 403
        assert json.loads(denied.response.content)["errors"][0]["code"] == "DENIED"
        assert denied.request.host == "registry-1.docker.io"  # never sent to the realm
        assert "Authorization" not in denied.request.headers

        for query in ("scope=%FF", "scope=repository:a%0Ab:pull", "account=%FF"):
            bad = reverse_flow("GET", "/v2/auth?" + query)
            router.requestheaders(bad)
            await auth.requestheaders(bad)
            assert bad.response.status_code == 400, query
            assert "Authorization" not in bad.request.headers


async def test_token_post_asks_only_for_pull_and_never_gets_route_credentials():
    router, auth = addons()
    with_route_account(router, deny=("private/*",))
    auth.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with taddons.context(router, auth, UpstreamConnections()):
        t = reverse_flow(
            "POST",
            "/v2/auth",
            headers=form,
            content=b"grant_type=password&username=u&password=p%C3%A4ss&access_type=offline"
            b"&scope=repository%3Aa%2Fb%3Apull%2Cpush+repository%3Aprivate%2Fx%3Apull",
        )
        router.requestheaders(t)
        await auth.requestheaders(t)
        auth.request(t)
        assert t.response is None
        assert "Authorization" not in t.request.headers
        assert urllib.parse.parse_qsl(t.request.text) == [
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "päss"),
            ("scope", "repository:a/b:pull"),
        ]
        for body in (b"password=\xff&scope=repository%3Aa%3Apull", b"scope=%FF", b"a=%C3"):
            bad = reverse_flow("POST", "/v2/auth", headers=form, content=body)
            router.requestheaders(bad)
            await auth.requestheaders(bad)
            auth.request(bad)
            assert bad.response.status_code == 400, body
        denied = reverse_flow(
            "POST", "/v2/auth", headers=form, content=b"scope=repository%3Aprivate%2Fx%3Apull"
        )
        router.requestheaders(denied)
        await auth.requestheaders(denied)
        auth.request(denied)
        assert denied.response.status_code == 403


def test_refresh_tokens_never_reach_clients():
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        t = reverse_flow("GET", "/v2/auth?scope=repository:a/b:pull")
        router.requestheaders(t)
        answer = token_body(refresh_token="R", expires_in=60)
        respond(t, 200, {"Content-Type": "application/json"}, answer.encode())
        auth.response(t)
        assert "refresh_token" not in json.loads(t.response.content)
        assert json.loads(t.response.content)["token"] == "T"


def learn_challenge(router, auth):
    f = reverse_flow("GET", "/v2/")
    router.requestheaders(f)
    respond(f, 401, {"WWW-Authenticate": HUB_CHALLENGE})
    auth.responseheaders(f)


async def test_anonymous_ping_answered_from_the_learned_challenge(monkeypatch):
    router, auth = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        first = reverse_flow("GET", "/v2/")
        router.requestheaders(first)
        await auth.requestheaders(first)
        assert first.response is None  # nothing learned yet: the upstream answers
        learn_challenge(router, auth)
        for method in ("GET", "HEAD"):
            f = reverse_flow(method, "/v2/")
            router.requestheaders(f)
            await auth.requestheaders(f)
            assert f.response.status_code == 401
            assert f.response.headers["WWW-Authenticate"] == (
                'Bearer realm="http://mirror.test:5000/v2/auth",service="registry.docker.io"'
            )
            assert f.response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
            auth.responseheaders(f)  # the mirror's own answer teaches nothing
            assert auth.challenges["https://registry-1.docker.io"].params["realm"] == (
                "https://auth.docker.io/token"
            )
        # a client with a token, and an old challenge, go to the upstream
        with_token = reverse_flow("GET", "/v2/", headers={"Authorization": "Bearer t"})
        router.requestheaders(with_token)
        await auth.requestheaders(with_token)
        assert with_token.response is None
        monkeypatch.setattr(token_proxy.time, "monotonic", lambda: 1e12)
        stale = reverse_flow("GET", "/v2/")
        router.requestheaders(stale)
        await auth.requestheaders(stale)
        assert stale.response is None


def token_body(expires_in=300, **extra):
    return json.dumps({"token": "T", "access_token": "T", "expires_in": expires_in, **extra})


async def test_anonymous_tokens_are_shared_while_fresh(monkeypatch):
    router, auth = addons()
    now = [1_000_000.0]
    monkeypatch.setattr(token_proxy.time, "time", lambda: now[0])
    path = "/v2/auth?service=registry.docker.io&scope=repository:nginx:pull"
    with taddons.context(router, auth, UpstreamConnections()):
        learn_challenge(router, auth)

        def token_flow(headers=None):
            t = reverse_flow("GET", path, headers=headers)
            router.requestheaders(t)
            return t

        first = token_flow()
        await auth.requestheaders(first)
        assert first.response is None
        respond(first, 200, {"Content-Type": "application/json"}, token_body().encode())
        auth.response(first)

        now[0] += 100
        again = token_flow()
        await auth.requestheaders(again)
        body = json.loads(again.response.content)
        assert (body["token"], body["expires_in"]) == ("T", 200)
        assert body["issued_at"] == "1970-01-12T13:48:20Z"
        auth.response(again)  # a reused answer is not stored again
        assert auth.tokens.tokens[first.request.url].issued == 1_000_000.0

        # a client with credentials always asks the upstream, and its token is not kept
        own = token_flow({"Authorization": "Basic dTpw"})
        await auth.requestheaders(own)
        assert own.response is None
        respond(own, 200, {}, token_body(expires_in=3600).encode())
        auth.response(own)
        assert auth.tokens.tokens[first.request.url].lifetime == 300

        now[0] += 100  # less than half the lifetime left: ask the upstream again
        late = token_flow()
        await auth.requestheaders(late)
        assert late.response is None
        respond(late, 200, {}, token_body().encode())
        auth.response(late)
        assert auth.tokens.tokens[first.request.url].issued == now[0]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"expires_in": 300}', token_body(60).encode(),
     token_body(refresh_token="r").encode()],
)  # fmt: skip
def test_token_answers_not_worth_sharing(body):
    assert token_cache.cacheable_token(body, 0.0) is None
    assert token_cache.cacheable_token(token_body().encode(), 0.0) is not None


def test_parse_token_answer():
    answer = token_answers.parse_token_answer(b'{"token":"a","access_token":"a","expires_in":120}')
    assert (answer.tokens, answer.lifetime) == (["a", "a"], 120)
    assert token_answers.parse_token_answer(b'{"access_token":"b"}').lifetime == 60  # the spec's
    for body in (b"[1]", b"x", b'{"token":""}', b'{"token":"a","expires_in":"soon"}'):
        assert token_answers.parse_token_answer(body) is None

        assert token_answers.parse_token_answer(body) is None


# --- Properties (hypothesis) -------------------------------------------------------------

import math

from hypothesis import example, given
from hypothesis import strategies as st
from regmirror.auth.challenge import Challenge, format_challenge, parse_challenges

from tests.strategies import header_text, props

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_lifetimes = st.one_of(
    st.integers(), st.integers(min_value=10**300), st.floats(), st.booleans(), st.text(max_size=3)
)
_answers = st.fixed_dictionaries(
    {},
    optional={"token": st.text(max_size=8) | _json, "access_token": st.text(max_size=8),
              "expires_in": _lifetimes, "refresh_token": st.just("r"), "issued_at": _json},
)  # fmt: skip
token_bodies = st.one_of(
    st.binary(max_size=100),
    _json.map(lambda v: json.dumps(v).encode()),
    _answers.map(lambda v: json.dumps(v).encode()),
    st.integers(1000, 3000).map(lambda n: b"[" * n),  # deeper than json.loads recurses
)
# The bodies that broke parse_token_answer, for the fixer of token_proxy.py:
_DEEP = b"[" * 100_000  # RecursionError from json.loads
_HUGE = b'{"token": "t", "expires_in": 1' + b"0" * 400 + b"}"  # OverflowError from float()
_FOREVER = b'{"token": "t", "expires_in": 1e999}'  # inf: int(inf) in reused_token
_NAN = b'{"token": "t", "expires_in": NaN}'  # cached, with a lifetime that is no number


@props(150)
@given(token_bodies)
@example(_DEEP)
@example(_HUGE)
def test_prop_parse_token_answer_returns_none_or_an_answer(body):
    answer = token_answers.parse_token_answer(body)
    if answer is not None:
        assert answer.tokens and all(isinstance(t, str) and t for t in answer.tokens)
        assert isinstance(answer.lifetime, float)


@props(100)
@given(token_bodies, st.floats(0, 4e9), st.floats(0, 1e6))
@example(_FOREVER, 0.0, 100.0)
@example(_HUGE, 0.0, 100.0)
@example(_NAN, 0.0, 100.0)
def test_prop_a_shared_token_never_outlives_its_answer(body, now, later):
    cached = token_cache.cacheable_token(body, now)
    if cached is None:
        return
    assert "refresh_token" not in cached.body
    assert math.isfinite(cached.lifetime) and cached.lifetime >= 120
    resp = token_cache.reused_token(cached, now + later)
    if resp is not None:
        shared = json.loads(resp.content)
        assert 0 <= shared["expires_in"] <= cached.lifetime


_challenges = st.builds(
    Challenge,
    st.sampled_from(["Bearer", "bearer", "Basic", "Negotiate"]),
    st.fixed_dictionaries(
        {}, optional={"realm": st.sampled_from(["https://auth.example/t", "/relative", ""])
                      | header_text, "service": header_text, "scope": header_text}
    ),
)  # fmt: skip


@props(100)
@given(st.one_of(_challenges.map(format_challenge), header_text), header_text)
def test_prop_mirror_challenge_points_the_client_at_the_mirror(header, realm):
    try:
        rewritten = mirror_challenge(header, realm)
    except ValueError:
        return
    if rewritten is None:
        return
    learned, client = rewritten
    assert learned.params["realm"].startswith(("https://", "http://"))
    (c,) = parse_challenges(client)
    assert c.is_bearer and c.params == {**learned.params, "realm": realm}


async def unreachable(self, host, port, remembered=True):
    return f"cannot connect to {host}:{port}: refused"


async def test_with_the_upstream_down_pings_get_the_old_challenge_or_none(monkeypatch):
    router, auth = addons()
    monkeypatch.setattr(UpstreamConnections, "unreachable", unreachable)
    with taddons.context(router, auth, UpstreamConnections()):
        never = reverse_flow("GET", "/v2/")
        router.requestheaders(never)
        await auth.requestheaders(never)
        assert never.response.status_code == 200  # never challenged: no auth, the cache serves
        assert never.response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert "registry-1.docker.io:443" in outcome(never)["offline"]
        learn_challenge(router, auth)
        monkeypatch.setattr(token_proxy.time, "monotonic", lambda: 1e12)  # long ago
        old = reverse_flow("HEAD", "/v2/")
        router.requestheaders(old)
        await auth.requestheaders(old)
        assert old.response.status_code == 401 and old.response.content == b""
        assert 'realm="http://mirror.test:5000/v2/auth"' in old.response.headers["WWW-Authenticate"]


async def test_with_the_realm_down_the_mirror_signs_a_token_that_never_goes_upstream(monkeypatch):
    router, auth = addons()
    monkeypatch.setattr(UpstreamConnections, "unreachable", unreachable)
    with taddons.context(router, auth, UpstreamConnections()):
        learn_challenge(router, auth)
        t = reverse_flow("GET", "/v2/auth?scope=repository:library/nginx:pull")
        router.requestheaders(t)
        await auth.requestheaders(t)
        body = json.loads(t.response.content)
        assert body["expires_in"] == token_answers.MIRROR_TOKEN_LIFETIME
        assert offline_tokens.valid(router.signer.key, body["token"], time.time())
        assert "auth.docker.io:443" in outcome(t)["offline"]
        for token, holds in ((body["token"], True), ("regmirror-offline.1.forged", False)):
            f = reverse_flow(
                "GET", "/v2/library/nginx/manifests/1", headers={"Authorization": f"Bearer {token}"}
            )
            router.requestheaders(f)
            await auth.requestheaders(f)
            assert "Authorization" not in f.request.headers  # valid or not, never forwarded
            assert bool(outcome(f).get("offline")) is holds

import json
import time

import pytest
from mitmproxy import contentviews
from regmirror.observe.redact import fingerprint
from regmirror.observe.views.tokens import TokenView, decode_jwt, render
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow
from tests.support.tokenserver import TokenServer
from tests.viewutil import registered, show, text

ACCESS = [{"type": "repository", "name": "library/nginx", "actions": ["pull"]}]


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    return TokenServer(tmp_path_factory.mktemp("token"), users={"alice": "pw"})


def token_answer(token: str, **extra) -> dict:
    return {"token": token, "access_token": token, "expires_in": 300, **extra}


def test_jwt_header_and_claims_without_signature_or_token(token_server):
    token = token_server.issue_token("alice", access=ACCESS, expires_in=300)
    header_b64, claims_b64, signature = token.split(".")
    claims = decode_jwt(token)[1]
    description, lines = render(
        token_answer(token, issued_at="2024-01-01T00:00:00Z", refresh_token="R3FR3SH"),
        now=claims["exp"] - 299,
    )
    out = text(lines)
    assert description.startswith(f"Registry token {fingerprint(token)}, expires ")
    assert description.endswith("(in 4 min 59 s)")
    for secret in (token, signature, header_b64, claims_b64, "R3FR3SH"):
        assert secret not in out and secret not in description
    assert "refresh_token: <redacted>" in out
    assert "expires_in:    300 s" in out
    assert f"fingerprint: {fingerprint(token)}" in out
    assert "alg: ES256" in out
    assert "x5c: 1 certificate(s), not shown" in out
    assert "iss: test-token-issuer" in out
    assert "sub: alice" in out
    assert "aud: test-registry" in out
    assert "(in 4 min 59 s)" in next(line for line in out.splitlines() if "exp:" in line)
    assert "  repository  library/nginx  pull" in out


def test_expired_token_and_empty_access(token_server):
    token = token_server.issue_token(None, access=[], expires_in=60)
    exp = decode_jwt(token)[1]["exp"]
    description, lines = render(token_answer(token), now=exp + 120)
    assert description.endswith("(2 min ago)")
    assert "Access: none granted" in text(lines)


def test_opaque_token_and_different_access_token():
    description, lines = render({"token": "abc", "access_token": "def"}, now=time.time())
    out = text(lines)
    assert description == f"Registry token {fingerprint('abc')}"
    assert f"access_token: differs from token: {fingerprint('def')}" in out
    assert "opaque token of 3 characters, not shown" in out
    assert "abc" not in out.replace(fingerprint("abc"), "")


def test_decode_jwt_rejects_non_jwts():
    assert decode_jwt("a.b") is None
    assert decode_jwt("!!.??.x") is None
    assert decode_jwt("W10.W10.x") is None  # [] and [] are not objects


def test_chosen_for_token_answers_only(token_server):
    token = token_server.issue_token("alice", access=ACCESS)
    body = json.dumps(token_answer(token)).encode()
    router = Router()
    with registered(router):
        f = reverse_flow("GET", "/v2/auth?scope=repository:nginx:pull")
        router.requestheaders(f)
        respond(f, 200, {"Content-Type": "application/json"}, body)
        description, out = show("auto", f)
        assert description.startswith("Registry token ")
        assert token not in out
        view = TokenView()
        assert view.render_priority(body, flow=f, http_message=f.request) == 0
        assert view.render_priority(body, flow=f, http_message=f.response) == 2
        f.response.status_code = 401
        assert view.render_priority(body, flow=f, http_message=f.response) == 0
        m = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(m)
        respond(m, 200, {"Content-Type": "application/json"}, body)
        assert view.render_priority(body, flow=m, http_message=m.response) == 0
        assert show("auto", m)[0] == "JSON"
    assert contentviews.get("Registry token") is None

import json

from mitmproxy import http
from mitmproxy.test import tflow
from regmirror.observe.views.challenges import ErrorView, render

from tests.viewutil import registered, show, text

HUB_CHALLENGE = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/nginx:pull,push",error="insufficient_scope"'
)
DENIED = {
    "errors": [
        {
            "code": "DENIED",
            "message": "requested access to the resource is denied",
            "detail": [{"Type": "repository", "Name": "library/nginx", "Action": "push"}],
        }
    ]
}


def response_flow(status: int, body: bytes, headers: dict[str, str]) -> http.HTTPFlow:
    f = tflow.tflow()
    f.response = http.Response.make(status, body, headers)
    return f


def test_challenge_parameters_and_errors():
    description, lines = render(401, "Unauthorized", [HUB_CHALLENGE], json.dumps(DENIED).encode())
    out = text(lines)
    assert description == "Registry error 401 DENIED"
    assert out.splitlines()[0] == "401 Unauthorized"
    assert "Www-Authenticate: Bearer" in out
    assert "  realm:   https://auth.docker.io/token" in out
    assert "  scope:   repository:library/nginx:pull,push" in out
    assert "  error:   insufficient_scope" in out
    assert "DENIED  requested access to the resource is denied" in out
    assert '  detail: [{"Type":"repository","Name":"library/nginx","Action":"push"}]' in out


def test_several_challenges_and_a_malformed_one():
    out = text(render(401, "", ['Basic realm="x", Bearer realm="y"', '"broken'], b"")[1])
    assert out.splitlines()[0] == "401 Unauthorized"
    assert "Www-Authenticate: Basic" in out and "Www-Authenticate: Bearer" in out
    assert "Www-Authenticate (malformed)" in out


def test_token_service_and_non_json_errors():
    body = b'{"details": "incorrect username or password"}'
    assert "details  incorrect username or password" in text(render(401, "", [], body)[1])
    out = text(render(502, "Bad Gateway", [], b"<html>upstream down</html>")[1])
    assert "Body\n<html>upstream down</html>" in out


def test_chosen_for_refusals_even_without_body():
    with registered():
        head = response_flow(401, b"", {"WWW-Authenticate": HUB_CHALLENGE})
        description, out = show("auto", head)
        assert description == "Registry error 401"
        assert "scope:   repository:library/nginx:pull,push" in out
        body = json.dumps(DENIED).encode()
        err = response_flow(403, body, {"Content-Type": "application/json"})
        assert show("auto", err)[0] == "Registry error 403 DENIED"
        ok = response_flow(200, body, {"Content-Type": "application/json"})
        assert show("auto", ok)[0] == "JSON"
        assert ErrorView().render_priority(body, http_message=ok.request) == 0
        plain = response_flow(404, b"not found", {"Content-Type": "text/plain"})
        assert ErrorView().render_priority(b"not found", http_message=plain.response) == 0

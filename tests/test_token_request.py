import urllib.parse

import pytest
from regmirror.auth.token_request import (
    InvalidTokenRequest,
    Scopes,
    checked_params,
    parse_form,
    token_form,
    token_url,
)
from regmirror.routing.names import with_library

HUB = Scopes(with_library, lambda name: not name.startswith("private/"), catalog=False)


def test_token_url_keeps_params_and_asks_only_for_pull():
    url, scopes = token_url(
        "https://auth.example/token?client=a&service=old",
        "registry.docker.io",
        [
            ("scope", "repository:nginx:pull"),
            ("scope", "repository:library/nginx:pull,push"),
            ("scope", "repository:private/secret:pull"),
            ("scope", "registry:catalog:*"),
            ("service", "client-sent"),
            ("account", "bob"),
            ("offline_token", "true"),
        ],
        HUB,
    )
    u = urllib.parse.urlsplit(url)
    assert (u.scheme, u.netloc, u.path) == ("https", "auth.example", "/token")
    assert urllib.parse.parse_qsl(u.query) == [
        ("client", "a"),
        ("service", "registry.docker.io"),
        ("account", "bob"),
        ("scope", "repository:library/nginx:pull"),
    ]
    assert scopes == ["repository:library/nginx:pull"]


def test_token_url_without_scopes():
    url, scopes = token_url("https://a/t", "svc", [("account", "bob")], HUB)
    assert (url, scopes) == ("https://a/t?service=svc&account=bob", [])


def test_token_form():
    form = [
        ("grant_type", "password"),
        ("scope", "repository:a:pull repository:b/c:push repository:d:pull,delete"),
        ("access_type", "offline"),
        ("service", "x"),
    ]
    text, scopes = token_form(form, "hub", HUB)
    assert urllib.parse.parse_qsl(text) == [
        ("grant_type", "password"),
        ("service", "hub"),
        ("scope", "repository:library/a:pull repository:library/d:pull"),
    ]
    assert scopes == ["repository:library/a:pull", "repository:library/d:pull"]


@pytest.mark.parametrize(
    "params",
    [[("scope", "\udcff")], [("account", "b\udcffb")], [("\udcff", "x")],
     [("scope", "repository:a:pull\nrepository:b:push")], [("x", "1")] * 101],
)  # fmt: skip
def test_malformed_queries_raise(params):
    with pytest.raises(InvalidTokenRequest):
        token_url("https://a/t", "svc", params, HUB)


def test_checked_params_passes_text():
    assert checked_params([("account", "jürgen")]) == [("account", "jürgen")]


def test_parse_form():
    assert parse_form(b"grant_type=password&password=p%C3%A4ss&scope=a+b") == [
        ("grant_type", "password"),
        ("password", "päss"),
        ("scope", "a b"),
    ]
    assert parse_form(b"") == []


@pytest.mark.parametrize("body", [b"password=\xff", b"password=%FF", b"a=%C3", b"noequals"])
def test_parse_form_refuses_malformed_bodies(body):
    with pytest.raises(InvalidTokenRequest):
        parse_form(body)


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import assume, example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from regmirror.auth.challenge import Challenge, format_challenge  # noqa: E402
from regmirror.auth.token_proxy import mirror_challenge  # noqa: E402

from tests.strategies import header_text, mitm_text, props  # noqa: E402

_realms = st.one_of(
    st.sampled_from(["https://auth.docker.io/token", "https://a.example/t?client=x&service=old",
                     "http://127.0.0.1:5001/auth?"]),
    st.builds("https://{}".format, header_text),
)  # fmt: skip
# Query parameters and form fields as mitmproxy decodes them (surrogate-escaped bytes).
_params = st.lists(
    st.tuples(st.sampled_from(["scope", "service", "account", "offline_token"]) | mitm_text,
              mitm_text),
    max_size=4,
)  # fmt: skip


def _learned(realm: str) -> bool:
    """Whether the mirror takes `realm` from an upstream's challenge."""
    try:
        header = format_challenge(Challenge("Bearer", {"realm": realm}))
        return mirror_challenge(header, "x") is not None
    except ValueError:
        return False


@props(150)
@given(_realms, mitm_text, _params)
@example("https://auth.docker.io/token", "hub", [("scope", "repository:\udcff:pull")])
def test_prop_token_url_keeps_the_realm_and_the_clients_other_parameters(realm, service, params):
    assume(_learned(realm))
    try:
        url, scopes = token_url(realm, service, params, HUB)
    except InvalidTokenRequest:
        return
    u, r = urllib.parse.urlsplit(url), urllib.parse.urlsplit(realm)
    assert (u.scheme, u.netloc, u.path) == (r.scheme, r.netloc, r.path)
    query = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    assert [v for k, v in query if k == "scope"] == scopes
    assert all(s.endswith(":pull") or s == "registry:catalog:*" for s in scopes)
    others = [(k, v) for k, v in params if k not in ("scope", "service", "offline_token")]
    assert [(k, v) for k, v in query if (k, v) in others] == others
    assert "offline_token" not in dict(query)


@props(150)
@given(_params, mitm_text)
@example([("password", "\udcff")], "hub")  # a password that is not UTF-8
def test_prop_token_form_never_asks_for_more_than_pull(form, service):
    try:
        text, scopes = token_form(form, service, HUB)
    except InvalidTokenRequest:
        return
    out = urllib.parse.parse_qsl(text, keep_blank_values=True, errors="surrogateescape")
    assert [v for k, v in out if k == "scope"] == ([" ".join(scopes)] if scopes else [])
    assert "access_type" not in dict(out)


@props(150)
@given(st.binary(max_size=200))
def test_prop_parse_form_takes_any_body(body):
    try:
        pairs = parse_form(body)
    except InvalidTokenRequest:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)

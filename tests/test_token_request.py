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

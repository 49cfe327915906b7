import pytest
from regmirror.auth.challenge import (
    Challenge,
    bearer_challenge,
    format_challenge,
    parse_challenges,
    with_realm,
)

HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/nginx:pull,push",error="insufficient_scope"'
)


def test_by_name_with_commas_in_values():
    (c,) = parse_challenges(HUB)
    assert c.scheme == "Bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
        "error": "insufficient_scope",
    }


def test_order_spacing_case_and_tokens():
    (c,) = parse_challenges('bearer  Service=reg ,  REALM = "http://a/token"')
    assert c.is_bearer
    assert c.params == {"service": "reg", "realm": "http://a/token"}


def test_escapes_and_several_challenges():
    cs = parse_challenges(r'Basic realm="say \"hi\"", Bearer realm="http://t",service="s"')
    assert [c.scheme for c in cs] == ["Basic", "Bearer"]
    assert cs[0].params["realm"] == 'say "hi"'
    assert bearer_challenge(r'Basic realm="x", Bearer realm="http://t"').params["realm"] == (
        "http://t"
    )


@pytest.mark.parametrize(
    "header", ["", "   ", 'Bearer realm="unterminated', "Basic realm=x", '="x"', "Bearer service=x"]
)
def test_no_usable_bearer(header):
    with pytest.raises(ValueError):
        bearer_challenge(header)


def test_format_roundtrip_keeps_everything():
    (c,) = parse_challenges(HUB)
    new = with_realm(c, "https://mirror.example/v2/auth")
    out = format_challenge(new)
    assert out.startswith('Bearer realm="https://mirror.example/v2/auth",')
    (back,) = parse_challenges(out)
    assert back.params == {**c.params, "realm": "https://mirror.example/v2/auth"}


def test_format_quotes():
    assert format_challenge(Challenge("Bearer", {"realm": 'a"b\\c'})) == r'Bearer realm="a\"b\\c"'

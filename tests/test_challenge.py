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


# --- Properties (hypothesis) -------------------------------------------------------------

import string

from hypothesis import example, given
from hypothesis import strategies as st

from tests.strategies import any_text, header_text, props

_tokens = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=10)
# Values with what quoting must survive: commas, quotes, backslashes, equals, spaces.
_values = st.one_of(st.text('ab,"\\= :/', max_size=12), any_text)
challenges = st.builds(
    Challenge, _tokens, st.dictionaries(_tokens.map(str.lower), _values, max_size=4)
)


@props(200)
@given(header_text)
@example('Bearer realm="' + "\\" * 5000)
def test_prop_parse_challenges_raises_only_value_error(header):
    try:
        parsed = parse_challenges(header)
    except ValueError:
        return
    assert parsed and all(c.params.keys() == {k.lower() for k in c.params} for c in parsed)


@props(100)
@given(challenges)
@example(Challenge("Bearer", {"scope": "repository:x:pull,push", "realm": 'a"b\\'}))
def test_prop_format_challenge_round_trips(c):
    assert parse_challenges(format_challenge(c)) == [c]


@props(100)
@given(st.lists(challenges, min_size=1, max_size=3))
@example([Challenge("Negotiate", {}), Challenge("Bearer", {"realm": "http://t"})])
def test_prop_several_challenges_round_trip(cs):
    """RFC 7235: `WWW-Authenticate: Negotiate, Bearer realm="..."`: challenges separated by
    commas, a scheme alone among them."""
    assert parse_challenges(", ".join(format_challenge(c) for c in cs)) == cs


@props(200)
@given(header_text, header_text)
def test_prop_bearer_challenge_has_a_realm_or_raises(header, realm):
    try:
        c = bearer_challenge(header)
    except ValueError:
        return
    assert c.is_bearer and c.params["realm"]
    assert bearer_challenge(format_challenge(with_realm(c, realm or "x"))).params == {
        **c.params,
        "realm": realm or "x",
    }

from hypothesis import given
from regmirror.auth import offline_tokens
from regmirror.auth.token_answers import MIRROR_TOKEN_LIFETIME

from tests.strategies import header_text, props

KEY, OTHER = b"k" * 32, b"o" * 32


def test_a_minted_token_is_valid_until_it_expires_and_only_under_its_key():
    token = offline_tokens.mint(KEY, 1000.0)
    assert offline_tokens.is_offline(token)
    assert offline_tokens.valid(KEY, token, 1000.0)
    assert offline_tokens.valid(KEY, token, 1000.0 + MIRROR_TOKEN_LIFETIME)
    assert not offline_tokens.valid(KEY, token, 1001.0 + MIRROR_TOKEN_LIFETIME)
    assert not offline_tokens.valid(OTHER, token, 1000.0)


def test_forgeries_are_not_valid_and_other_tokens_are_not_offline():
    token = offline_tokens.mint(KEY, 1000.0)
    expires, _, mac = token.removeprefix(offline_tokens.PREFIX).partition(".")
    forged = [
        f"{offline_tokens.PREFIX}{int(expires) + 10**6}.{mac}",  # a later expiry
        f"{offline_tokens.PREFIX}0{expires}.{mac}",  # the same number, written otherwise
        f"{offline_tokens.PREFIX}{expires}.",
        f"{offline_tokens.PREFIX}x.{mac}",
        f"{offline_tokens.PREFIX}١٢٣.{mac}",  # digits, not ASCII
        offline_tokens.PREFIX,
    ]
    for bad in forged:
        assert offline_tokens.is_offline(bad) and not offline_tokens.valid(KEY, bad, 1000.0)
    assert not offline_tokens.is_offline("eyJhbGciOi.upstream.jwt")
    assert not offline_tokens.valid(KEY, "eyJhbGciOi.upstream.jwt", 0.0)


@props(300)
@given(rest=header_text)
def test_prop_any_token_a_client_sends_is_judged_without_raising(rest):
    token = offline_tokens.PREFIX + rest  # what follows `Bearer ` in a header, as decoded
    assert offline_tokens.valid(KEY, token, 0.0) in (True, False)
    for mac in ("\udcff", "\ud800", "é"):
        assert not offline_tokens.valid(KEY, f"{offline_tokens.PREFIX}1.{mac}", 0.0)

"""Tokens the mirror signs itself when an upstream's token service cannot be reached, so
that clients can still pull what the cache holds for everyone (offline pulls).

Only the mirror accepts them, and they are never sent upstream: the token proxy takes them
off every request (token_proxy.py), which then reads as anonymous. They grant nothing the
cache would not give an anonymous client. Pure, given the key and `now`."""

import base64
import hashlib
import hmac

from .token_answers import MIRROR_TOKEN_LIFETIME

PREFIX = "regmirror-offline."


def _mac(key: bytes, expires: str) -> str:
    digest = hmac.new(key, f"offline token\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(key: bytes, now: float) -> str:
    expires = str(int(now) + MIRROR_TOKEN_LIFETIME)
    return f"{PREFIX}{expires}.{_mac(key, expires)}"


def is_offline(token: str) -> bool:
    """Whether `token` looks like one of ours (valid or not: none is forwarded)."""
    return token.startswith(PREFIX)


def valid(key: bytes, token: str, now: float) -> bool:
    """Signed by `key` and not expired."""
    expires, _, mac = token.removeprefix(PREFIX).partition(".")
    if not is_offline(token) or not expires.isascii() or not expires.isdigit():
        return False
    if not mac.isascii():  # undecodable bytes arrive as surrogates: no MAC of ours
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, expires).encode()) and int(expires) >= now

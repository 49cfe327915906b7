"""Anonymous tokens shared between clients: an upstream's token answer for one token URL
(realm, service, scopes) is handed to the next anonymous client that asks for the same,
while at least TOKEN_REUSE of its lifetime is left. Never shared: tokens obtained with any
credentials, tokens that come with a refresh token, and tokens living under 120 s. Pure,
given `now`."""

from typing import NamedTuple

from mitmproxy import http

from .token_answers import DEFAULT_TOKEN_LIFETIME, parse_token_answer, token_response

TOKEN_REUSE = 0.5
MAX_CACHED_TOKENS = 1024


class CachedToken(NamedTuple):
    body: dict[str, object]
    issued: float  # time.time() when the upstream issued it
    lifetime: float  # seconds


def cacheable_token(body: bytes, now: float) -> CachedToken | None:
    """An upstream's token answer that may be shared between anonymous clients: no refresh
    token (bound to an account), and a lifetime worth sharing."""
    answer = parse_token_answer(body)
    if answer is None or "refresh_token" in answer.body:
        return None
    if answer.lifetime < 2 * DEFAULT_TOKEN_LIFETIME:
        return None  # too short-lived to be worth sharing
    return CachedToken(answer.body, now, answer.lifetime)


def reusable(cached: CachedToken, now: float) -> bool:
    """At least TOKEN_REUSE of the token's lifetime is left."""
    return cached.issued + cached.lifetime - now >= cached.lifetime * TOKEN_REUSE


def reused_token(cached: CachedToken, now: float) -> http.Response | None:
    """The cached token for another anonymous client, with the lifetime it has left; None
    once it is no longer reusable."""
    if not reusable(cached, now):
        return None
    left = cached.issued + cached.lifetime - now
    return token_response({**cached.body, "expires_in": int(left)}, now)


class TokenCache:
    def __init__(self) -> None:
        self.tokens: dict[str, CachedToken] = {}  # upstream token URL -> its answer

    def answer(self, url: str, now: float) -> http.Response | None:
        cached = self.tokens.get(url)
        return reused_token(cached, now) if cached else None

    def remember(self, url: str, body: bytes, now: float) -> None:
        cached = cacheable_token(body, now)
        if cached is None:
            return
        if len(self.tokens) >= MAX_CACHED_TOKENS:
            self.tokens = {k: t for k, t in self.tokens.items() if t.issued + t.lifetime > now}
            if len(self.tokens) >= MAX_CACHED_TOKENS:
                self.tokens.pop(next(iter(self.tokens)))
        self.tokens[url] = cached

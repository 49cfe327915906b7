"""Token answers (`{"token", "access_token", "expires_in", "issued_at"}`): parsing what a
token service sent, and the JSON answers the mirror writes itself. Pure."""

import datetime
import json
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

from mitmproxy import http

DEFAULT_TOKEN_LIFETIME = 60  # seconds, when a token answer has no expires_in (the spec's)
MAX_TOKEN_LIFETIME = 366 * 86400  # seconds; an answer claiming more is no token answer
MIRROR_TOKEN_LIFETIME = 300  # seconds, of the tokens the mirror mints itself (short)


class TokenAnswer(NamedTuple):
    body: dict[str, Any]
    tokens: list[str]  # `token` and `access_token`, as given
    lifetime: float  # seconds; the spec's 60 when `expires_in` is missing


def parse_token_answer(body: bytes) -> TokenAnswer | None:
    """A token service's answer; None if the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # `[[[[...`: deeper than the parser recurses
        return None
    if not isinstance(data, dict):
        return None
    tokens = [t for t in (data.get("token"), data.get("access_token")) if isinstance(t, str) and t]
    lifetime = data.get("expires_in", DEFAULT_TOKEN_LIFETIME)
    if not tokens or isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return None
    if not 0 <= lifetime <= MAX_TOKEN_LIFETIME:  # also NaN, infinity and 10**400
        return None
    return TokenAnswer(data, tokens, float(lifetime))


def token_response(body: dict[str, Any], now: float) -> http.Response:
    """The mirror's own token answer: `body` with `issued_at` of `now`."""
    issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = json.dumps({**body, "issued_at": issued})
    return http.Response.make(200, content, {"Content-Type": "application/json"})


def mirror_token(now: float, token: str = "") -> http.Response:
    """A token of the mirror's own: `token`, or a random one for an upstream without token
    auth (client auth)."""
    token = token or secrets.token_urlsafe(32)
    body = {"token": token, "access_token": token, "expires_in": MIRROR_TOKEN_LIFETIME}
    return token_response(body, now)


def strip_refresh_token(resp: http.Response) -> None:
    """A refresh token outlives every check the mirror makes: no client gets one."""
    answer = parse_token_answer(resp.content or b"") if resp.status_code == 200 else None
    if answer is not None and "refresh_token" in answer.body:
        body = {k: v for k, v in answer.body.items() if k != "refresh_token"}
        resp.content = json.dumps(body).encode()


def rewrite_tokens(resp: http.Response, wrap: Callable[[str, float], str]) -> None:
    """Replace each token of a token answer by `wrap(token, lifetime)`; anything else as it
    was. Not a token answer: nothing changes."""
    answer = parse_token_answer(resp.content or b"") if resp.status_code == 200 else None
    if answer is None:
        return
    body = dict(answer.body)
    for field in ("token", "access_token"):
        if isinstance(token := body.get(field), str) and token:
            body[field] = wrap(token, answer.lifetime)
    resp.content = json.dumps(body).encode()

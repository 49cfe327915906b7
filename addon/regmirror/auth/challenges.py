"""Upstream challenges: the Bearer challenge an upstream sends, rewritten so that clients
fetch tokens through the mirror, and learned per upstream, so that anonymous pings can be
answered without asking the upstream again (the first round trip of every pull)."""

import urllib.parse

from mitmproxy import http

from .. import errors
from .challenge import Challenge, bearer_challenge, format_challenge, parse_challenges, with_realm

# What is learned of an upstream that answers without token auth.
NO_TOKEN_AUTH = Challenge("none", {})
# Anonymous `GET /v2/` pings are answered from an upstream's learned challenge for this long
# after the upstream last sent it; then the next ping goes upstream again and refreshes it.
CHALLENGE_TTL = 300.0


def mirror_challenge(upstream_header: str, realm: str) -> tuple[Challenge, str] | None:
    """(learned upstream challenge, header for the client with `realm`) for an upstream 401.

    None when the upstream uses another scheme (Basic), which passes through unchanged.
    Raises ValueError when the challenge is missing or malformed.
    """
    challenges = parse_challenges(upstream_header)
    if not any(c.is_bearer for c in challenges):
        return None
    learned = bearer_challenge(upstream_header)
    given = learned.params["realm"]
    u = urllib.parse.urlsplit(given)  # raises ValueError for `https://[x`
    if u.scheme not in ("https", "http") or not u.hostname:
        raise ValueError(f"realm is not an http(s) URL: {given[:100]!r}")
    return learned, format_challenge(with_realm(learned, realm))


def ping_answer(
    challenge: Challenge | None, learned: float, now: float, realm: str, head: bool
) -> http.Response | None:
    """The 401 for an anonymous ping, from a challenge learned at `learned` (monotonic
    seconds), pointing at the mirror's `realm`; None when it is not fresh enough."""
    if not challenge or not challenge.is_bearer or now - learned > CHALLENGE_TTL:
        return None
    params = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
    resp = errors.error_response(401, errors.UNAUTHORIZED, "authentication required", head=head)
    resp.headers["WWW-Authenticate"] = format_challenge(
        with_realm(Challenge("Bearer", params), realm)
    )
    return resp

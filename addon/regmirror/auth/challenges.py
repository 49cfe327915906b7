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


def ping_answer(challenge: Challenge | None, realm: str, head: bool) -> http.Response | None:
    """The 401 for an anonymous ping, from a learned Bearer challenge, pointing at the
    mirror's `realm`; None for no challenge or another scheme."""
    if not challenge or not challenge.is_bearer:
        return None
    params = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
    resp = errors.error_response(401, errors.UNAUTHORIZED, "authentication required", head=head)
    resp.headers["WWW-Authenticate"] = format_challenge(
        with_realm(Challenge("Bearer", params), realm)
    )
    return resp


def offline_ping(head: bool) -> http.Response:
    """The ping's answer when the upstream cannot be reached and never challenged this
    mirror: no auth, so clients go on to what the cache holds for everyone."""
    resp = http.Response.make(200, b"" if head else b"{}", {"Content-Type": "application/json"})
    resp.headers["Docker-Distribution-Api-Version"] = "registry/2.0"
    return resp

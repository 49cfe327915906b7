"""The tokens the mirror hands to clients under client authentication (client_auth.py): the
upstream's token, wrapped with whom it was issued to, how the upstream token was obtained
(provenance.py) and an expiry, under the HMAC and secret of signed URLs
(`regmirror_redirect_secret`, transport/signing.py). Stateless: every replica that shares
the secret and the htpasswd file accepts them, and none keeps a list of what it issued.

A token is bound to the credential it was issued for, by a fingerprint: an HMAC of the
user's bcrypt hash, or of a static token's sha256. Removing a user or a static token, or
changing a password, and reloading revokes the tokens everywhere, with no shared state. The
fingerprint is a MAC, so the bcrypt hash never reaches the client. Pure, given the key and
`now`.

`regmirror-client.<base64url JSON>.<MAC>`: the prefix is neither an offline token's
(offline_tokens.py) nor anything an upstream token starts with that is passed on."""

import hmac
from typing import NamedTuple

from ..transport.signing import mac, seal, unseal

PREFIX = "regmirror-client."
MIN_TTL, MAX_TTL = 60, 3600  # seconds a token stays valid here, at least and at most
_KIND = "client token"  # the first signed line: no other signature of the secret is valid here
_BINDING = "client token binding"


class Principal(NamedTuple):
    """What proved a client's identity, so that a reload can tell which secrets it revoked:
    a static token (by its sha256) or an htpasswd entry (user and bcrypt hash)."""

    kind: str  # "token" or "htpasswd"
    user: str
    proof: str


class Claims(NamedTuple):
    kind: str  # of the principal it was issued to
    user: str
    binding: str  # the fingerprint of the principal's proof
    provenance: str  # how the upstream token was obtained
    upstream: str  # the upstream's token, which goes upstream in its place
    expires: int


def _binding(key: bytes, principal: Principal) -> bytes:
    return mac(key, (_BINDING, principal.kind, principal.user, principal.proof))


def mint(
    key: bytes, principal: Principal, provenance: str, upstream: str, lifetime: float, now: float
) -> str:
    """A token for `principal` that carries `upstream`, valid for `lifetime` seconds clamped
    to [MIN_TTL, MAX_TTL]."""
    expires = int(now + min(max(lifetime, MIN_TTL), MAX_TTL))
    fields = [principal.kind, principal.user, _binding(key, principal).decode(), provenance,
              upstream, expires]  # fmt: skip
    return PREFIX + seal(key, _KIND, fields)


def is_client_token(token: str) -> bool:
    """Whether `token` looks like one of ours (valid or not)."""
    return token.startswith(PREFIX)


def open_token(key: bytes, token: str, now: float) -> Claims | None:
    """The claims of a token signed by `key` and not expired; None for anything else, however
    malformed (undecodable bytes arrive as surrogates)."""
    fields = unseal(key, _KIND, token.removeprefix(PREFIX)) if is_client_token(token) else None
    if fields is None or len(fields) != len(Claims._fields):
        return None
    claims = Claims(*fields)  # type: ignore[arg-type]
    if not all(isinstance(f, str) for f in claims[:5]) or type(claims.expires) is not int:
        return None
    # The upstream token goes into a header: printable ASCII only (an upstream wrote it).
    header_safe = claims.upstream.isascii() and claims.upstream.isprintable()
    if not (claims.binding.isascii() and header_safe):
        return None
    return claims if claims.expires > now else None


def issued_to(key: bytes, claims: Claims, principal: Principal) -> bool:
    """Whether `claims` were issued for `principal` (the same user and proof)."""
    same = (claims.kind, claims.user) == (principal.kind, principal.user)
    return hmac.compare_digest(claims.binding.encode(), _binding(key, principal)) and same

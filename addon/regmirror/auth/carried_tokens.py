"""Tokens that carry how they were obtained, for replicas. The cache serves content to
others only when it was fetched anonymously or with the route's credentials (provenance.py),
which only the replica that fetched the token knows: behind a load balancer that spreads one
client's requests, another replica would take the token for the client's own credentials.
So with a configured regmirror_redirect_secret, shared by the replicas, the token proxy hands
such a token out wrapped, `regmirror-token.<base64url JSON>.<MAC>`: the provenance, the
upstream's token and an expiry, signed. Every replica takes the wrapper off (the upstream
sees its own token) and learns the provenance. Pure, given the key and `now`.

Tokens fetched with a client's own credentials are not wrapped: unknown is what they are
anyway, the client's. Under client authentication the mirror's own tokens carry it
(client_tokens.py)."""

from typing import NamedTuple

from ..transport.signing import seal, unseal
from .provenance import ANONYMOUS, ROUTE

PREFIX = "regmirror-token."
_KIND = "carried token"  # the first signed line: no other signature of the secret is valid here


class Carried(NamedTuple):
    provenance: str
    upstream: str
    expires: int


def mint(key: bytes, provenance: str, upstream: str, lifetime: float, now: float) -> str:
    return PREFIX + seal(key, _KIND, [provenance, upstream, int(now + lifetime)])


def is_carried(token: str) -> bool:
    """Whether `token` looks like one of these (valid or not)."""
    return token.startswith(PREFIX)


def open_token(key: bytes, token: str, now: float) -> Carried | None:
    """What a token signed by `key` and not expired carries; None for anything else."""
    fields = unseal(key, _KIND, token.removeprefix(PREFIX)) if is_carried(token) else None
    if fields is None or len(fields) != len(Carried._fields):
        return None
    carried = Carried(*fields)  # type: ignore[arg-type]
    if carried.provenance not in (ANONYMOUS, ROUTE) or type(carried.expires) is not int:
        return None
    upstream = carried.upstream
    if not (isinstance(upstream, str) and upstream.isascii() and upstream.isprintable()):
        return None  # it goes into a header: printable ASCII only
    return carried if carried.expires > now else None

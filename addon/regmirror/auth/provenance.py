"""How each upstream token the mirror handed out was obtained: anonymously, with the route's
configured credentials, or with a client's own credentials. The cache keys who may read
what it stores on this (cache/decisions.may_read); a token the mirror did not hand out is
a client's own. Pure, given `now`."""

import hashlib

ANONYMOUS, ROUTE, CLIENT = "anonymous", "route", "client"
MAX_ENTRIES = 10_000
MIN_LIFETIME = 60.0  # seconds a token is remembered, at least


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Provenances:
    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[float, str]] = {}  # sha256(token) -> (expiry, kind)

    def add(self, token: str, provenance: str, lifetime: float, now: float) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.entries = {k: e for k, e in self.entries.items() if e[0] > now}
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
        self.entries[_key(token)] = (now + max(lifetime, MIN_LIFETIME), provenance)

    def of(self, authorization: str, now: float) -> str:
        """The provenance of a request's `Authorization`: none is anonymous; a Bearer token
        the mirror handed out has its own; anything else is the client's own."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        entry = self.entries.get(_key(token.strip())) if scheme.lower() == "bearer" else None
        return entry[1] if entry and entry[0] > now else CLIENT

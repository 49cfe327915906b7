"""How each upstream token the mirror handed out was obtained: anonymously, with the route's
configured credentials, or with a client's own credentials. The cache keys who may read
what it stores on this (cache/decisions.may_read); a token the mirror did not hand out is
a client's own. Pure, given `now`."""

from .ledger import Ledger
from .token_answers import MAX_TOKEN_LIFETIME

ANONYMOUS, ROUTE, CLIENT = "anonymous", "route", "client"
MIN_LIFETIME = 60.0  # seconds a token is remembered, at least


class Provenances:
    def __init__(self) -> None:
        self.ledger = Ledger[str](MIN_LIFETIME, MAX_TOKEN_LIFETIME)

    def add(self, token: str, provenance: str, lifetime: float, now: float) -> None:
        self.ledger.add(token, provenance, lifetime, now)

    def of(self, authorization: str, now: float) -> str:
        """The provenance of a request's `Authorization`: none is anonymous; a Bearer token
        the mirror handed out has its own; anything else is the client's own."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        known = self.ledger.get(token.strip(), now) if scheme.lower() == "bearer" else None
        return known or CLIENT

    def expiry(self, authorization: str, now: float) -> float | None:
        """When the Bearer token of `authorization` expires, if the mirror handed it out."""
        scheme, _, token = authorization.partition(" ")
        return self.ledger.expiry(token.strip(), now) if scheme.lower() == "bearer" else None

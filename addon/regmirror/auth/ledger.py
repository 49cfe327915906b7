"""Secrets the mirror remembers (tokens it handed out, credentials bcrypt accepted), by
their sha256, each with a value, until it expires. Bounded: expired entries go first, then
the oldest. Pure, given `now`."""

import hashlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 10_000


def _key(secret: str) -> bytes:
    # Header values carry undecodable bytes as surrogates; they hash like any other.
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class Ledger(Generic[T]):
    def __init__(self, min_ttl: float, max_ttl: float) -> None:
        """Each secret is remembered for its own lifetime, clamped to [min_ttl, max_ttl]."""
        self.min_ttl, self.max_ttl = min_ttl, max_ttl
        self.entries: dict[bytes, tuple[float, T]] = {}

    def add(self, secret: str, value: T, ttl: float, now: float) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.entries = {k: e for k, e in self.entries.items() if e[0] > now}
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
        expiry = now + min(max(ttl, self.min_ttl), self.max_ttl)
        self.entries[_key(secret)] = (expiry, value)

    def get(self, secret: str, now: float) -> T | None:
        entry = self.entries.get(_key(secret)) if secret else None
        return entry[1] if entry and entry[0] > now else None

    def expiry(self, secret: str, now: float) -> float | None:
        """When `secret` is forgotten; None if it is not remembered (any more)."""
        entry = self.entries.get(_key(secret)) if secret else None
        return entry[0] if entry and entry[0] > now else None

    def revoke(self, keep: Callable[[T], bool]) -> None:
        self.entries = {k: e for k, e in self.entries.items() if keep(e[1])}

"""The cache's decisions as pure functions: sizes, freshness, upstream failure, who may read,
what to evict. Times are seconds (time.time()), always passed in as `now`."""

import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Protocol

GiB = 1 << 30
DEFAULT_MAX_SIZE = 20 * GiB
EVICT_TO = Fraction(9, 10)  # of the limit: evicting in bulk, not one entry per fill
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)", re.IGNORECASE)
# Statuses that say "the upstream cannot answer now", not "the answer is no": 408 and 429
# are its own timeouts and throttling, 5xx its failures (502/504 from a front included).
_FAILURE_STATUSES = frozenset({408, 429})


def parse_size(text: str) -> int:
    """Bytes, or a number with a k, m, g or t suffix in powers of 1024 ("20g", "1.5t")."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a size: give bytes, or a number with a k, m, g or t suffix "
            "(powers of 1024), for example 20g"
        )
    return int(Fraction(m[1]) * UNITS[m[2].lower()])


def default_max_size(free_bytes: int) -> int:
    """The default cap must not fill a disk: the smaller of 20 GiB and half the free space."""
    return min(DEFAULT_MAX_SIZE, free_bytes // 2)


def tag_fresh(validated: float, now: float, ttl: float) -> bool:
    """A tag validated less than `ttl` seconds ago is served without asking the upstream.
    ttl 0: always revalidate. A validation in the future (the clock went back) is not fresh:
    that costs one HEAD, never a wrong answer."""
    return ttl > 0 and 0 <= now - validated < ttl


def stale_usable(validated: float, now: float, stale_if_error: float) -> bool:
    """When the upstream fails, a tag validated less than `stale_if_error` seconds ago may be
    served from the cache (0 turns it off). A validation in the future counts as recent:
    a clock that went back must not turn an upstream outage into a failed pull."""
    return stale_if_error > 0 and now - validated < stale_if_error


def upstream_failed(status: int | None, error: str | None) -> bool:
    """Did the upstream fail to answer (connection refused or reset, timeout, 408, 429,
    5xx), so that the cache may stand in? No status and no error is no answer either.
    Anything else, 404, 401 and 403 included, is the upstream's authoritative answer."""
    if error is not None or status is None:
        return True
    return status >= 500 or status in _FAILURE_STATUSES


CURRENT, MOVED, GONE, FAILED, PASS = "current", "moved", "gone", "failed", "pass"


def revalidation(
    status: int | None, error: str | None, digest: str, cached: str, offline: bool
) -> str:
    """What the upstream's answer to a HEAD of a cached tag says:
    - CURRENT: 200 with the cached digest, served from the cache;
    - MOVED: 200 with another digest (or none): the new manifest is fetched;
    - GONE: 404: the tag is dropped and the 404 passed on;
    - FAILED: the upstream could not answer (upstream_failed), or asked a client that holds
      the mirror's offline token for a token it cannot get: a stale answer may stand in;
    - PASS: anything else (401, 403, ...): the upstream's answer goes to the client."""
    if upstream_failed(status, error) or (offline and status == 401):
        return FAILED
    if status == 404:
        return GONE
    if status == 200:
        return CURRENT if digest == cached else MOVED
    return PASS


def acceptable(media_type: str, accept: list[str]) -> bool:
    """May a manifest of `media_type` answer a request with these Accept headers? No Accept
    takes anything (distribution's default); otherwise its type or a wildcard must be
    listed, since an upstream answers another type (or converts) for such a client."""
    types = {part.split(";")[0].strip().lower() for value in accept for part in value.split(",")}
    types.discard("")
    return not types or bool({media_type.lower(), "*/*", "application/*"} & types)


def may_read(provenance: str, client_checked: bool) -> bool:
    """May this client be served content with this provenance? Content fetched anonymously or
    with the route's credentials: every client the mirror lets through. Content fetched with
    a client's own credentials: only a client whose credentials the upstream accepted for
    that repository (`client_checked`). Anything else, unknown provenances too: no."""
    if provenance in ("anonymous", "route"):
        return True
    return provenance == "client" and client_checked


class Evictable(Protocol):
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_access(self) -> float: ...


def evict(entries: Iterable[Evictable], limit: int, in_use: set[str]) -> list[str]:
    """Digests to evict when the total size is above `limit`: least recently used first
    (ties by digest, so the choice is stable), down to 90 % of the limit, skipping `in_use`
    (being filled or served). Nothing when the total is within the limit.

    Content is shared by digest, and a blob is one entry however many images link it: it
    goes by its own last access only, which every image's pull refreshes. So a layer is
    never expired under one image while another still pulls it (distribution's #2367).
    Evicting an entry takes its links and tags with it (Index.remove)."""
    entries = sorted(entries, key=lambda e: (e.last_access, e.digest))
    total = sum(e.size for e in entries)
    if total <= limit:
        return []
    target = limit * EVICT_TO
    chosen = []
    for entry in entries:
        if total <= target:
            break
        if entry.digest not in in_use:
            chosen.append(entry.digest)
            total -= entry.size
    return chosen

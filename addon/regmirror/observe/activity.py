"""Recent traffic for the status page, fed from the response and error hooks: bytes served
from the cache and fetched upstream and cache lookups, per minute over the last hour and in
total; each registry's upstream health (last success, last error) and rate limit; the last
stale answers and fill failures. In memory only: a restart starts afresh (the index keeps
what is cached). Everything but the `Activity` addon is pure and takes `now`."""

import re
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from mitmproxy import flow as mflow
from mitmproxy import http
from prometheus_client import CollectorRegistry, Gauge

from ..record import Route, outcome, route
from .describe import image, printable, registry
from .metrics import parse_ratelimit, served_bytes, source

MINUTES = 60  # the page's "last hour", in one-minute buckets
RECENT = 50  # stale answers and fill failures kept
MAX_TEXT = 200  # characters of an error message kept

_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")
_QUERY = re.compile(r"\?\S*")


@dataclass
class Minute:
    """Traffic counted in one minute (or in total)."""

    cache_bytes: int = 0  # served from the cache (hits and stale answers)
    upstream_bytes: int = 0  # passed on from an upstream
    hits: int = 0  # lookups the cache answered, stale answers included
    misses: int = 0  # lookups that went upstream

    def __add__(self, other: "Minute") -> "Minute":
        return Minute(
            self.cache_bytes + other.cache_bytes,
            self.upstream_bytes + other.upstream_bytes,
            self.hits + other.hits,
            self.misses + other.misses,
        )


class Traffic:
    def __init__(self) -> None:
        self.total = Minute()
        self._minutes: dict[int, Minute] = {}

    def add(self, now: float, counted: Minute) -> None:
        self.total += counted
        minute = int(now // 60)
        self._minutes[minute] = self._minutes.get(minute, Minute()) + counted
        for old in [m for m in self._minutes if m <= minute - MINUTES]:
            del self._minutes[old]

    def last_hour(self, now: float) -> list[Minute]:
        """MINUTES buckets, oldest first, the current minute last."""
        minute = int(now // 60)
        return [
            replace(self._minutes.get(m, Minute())) for m in range(minute - MINUTES + 1, minute + 1)
        ]


@dataclass
class Health:
    """What one registry's upstream answered lately; 0 for never."""

    success: float = 0.0
    status: int = 0  # of the last success
    error: float = 0.0
    problem: str = ""  # of the last error
    remaining: float | None = None  # Docker Hub's ratelimit-remaining, as last seen
    limit: float | None = None
    window: int | None = None  # seconds, from `ratelimit-limit: 100;w=21600`
    ratelimit_seen: float = 0.0


class Event(NamedTuple):
    at: float
    kind: str  # "stale" or "fill failed"
    image: str
    detail: str


@dataclass
class Snapshot:
    """A copy of the activity for one rendering of the page."""

    total: Minute
    minutes: list[Minute]
    upstreams: dict[str, Health]
    recent: list[Event] = field(default_factory=list)  # newest first


def lookup(cache: str) -> Minute:
    """The lookup a flow's cache outcome counts as: hit, stale: answered by the cache; miss,
    fill failed: went upstream."""
    if cache in ("hit", "stale"):
        return Minute(hits=1)
    return Minute(misses=1) if cache == "miss" or cache.startswith("fill failed") else Minute()


def scrub(text: str) -> str:
    """An error message fit for the page: no user info or query string of any URL in it
    (signed CDN URLs carry credentials there), printable, at most MAX_TEXT characters."""
    text = printable(_QUERY.sub("?…", _USERINFO.sub("", text)))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def upstream_failure(f: http.HTTPFlow) -> str:
    """Why a flow that ended without a response failed upstream: the upstream connection's
    error, or the flow's when it is not the client's doing (a disconnect, the mirror
    killing it); "" otherwise."""
    message = f.server_conn.error or (f.error.msg if f.error else "")
    if not message or message == mflow.Error.KILLED_MESSAGE:
        return ""
    # mitmproxy's words for a connection a server_connect hook refused, before the reason
    message = message.removeprefix("Connection killed: ")
    return "" if message.lower().startswith("client") else message


def window(value: str) -> int | None:
    """`100;w=21600` -> 21600."""
    for part in value.split(";")[1:]:
        key, _, number = part.strip().partition("=")
        if key == "w" and number.isdigit():
            return int(number)
    return None


class Activity:
    def __init__(self, metrics: CollectorRegistry) -> None:
        self.traffic = Traffic()
        self.upstreams: dict[str, Health] = {}
        self.recent: deque[Event] = deque(maxlen=RECENT)
        self.last_success = Gauge(
            "regmirror_upstream_last_success_timestamp_seconds",
            "When an upstream (registry, token service or redirect target) last answered, "
            "with anything but 5xx or 429, by registry.",
            ["registry"],
            registry=metrics,
        )
        self.last_error = Gauge(
            "regmirror_upstream_last_error_timestamp_seconds",
            "When an upstream last failed (unreachable, timeout, reset, 5xx, 429, or a tag "
            "served stale because its revalidation failed), by registry.",
            ["registry"],
            registry=metrics,
        )

    def snapshot(self, now: float) -> Snapshot:
        return Snapshot(
            self.traffic.total,
            self.traffic.last_hour(now),
            {k: replace(v) for k, v in self.upstreams.items()},
            list(reversed(self.recent)),
        )

    def response(self, f: http.HTTPFlow) -> None:
        r, resp = route(f), f.response
        if not r or not resp:
            return
        now, result, where = time.time(), outcome(f), source(f)
        cache = result.get("cache", "")
        counted = Minute() if r.get("via") else lookup(cache)  # its redirect was counted
        sent = served_bytes(f.request.method, resp)
        if where == "cache":
            counted.cache_bytes = sent
        elif where == "upstream":
            counted.upstream_bytes = sent
        self.traffic.add(now, counted)
        self._note(r, cache, now)
        reg = registry(r)
        if cache == "stale":
            self._failed(reg, now, "the tag's revalidation failed: served stale")
        elif result.get("offline") and result.get("answered_by"):
            self._failed(reg, now, f"unreachable, answered offline: {result['offline']}")
        elif where == "upstream":
            self._answered(reg, resp, now, result.get("bad_upstream", ""))

    def error(self, f: http.HTTPFlow) -> None:
        r = route(f)
        if not r or not f.error:
            return
        now, cache = time.time(), outcome(f).get("cache", "")
        self.traffic.add(now, Minute() if r.get("via") else lookup(cache))
        self._note(r, cache, now)
        if source(f) == "upstream" and not f.response and (problem := upstream_failure(f)):
            self._failed(registry(r), now, problem)

    def _note(self, r: Route, cache: str, now: float) -> None:
        if cache == "stale" or cache.startswith("fill failed"):
            kind, _, detail = cache.partition(": ")
            self.recent.append(Event(now, kind, image(r), scrub(detail)))

    def _answered(self, reg: str, resp: http.Response, now: float, bad: str) -> None:
        health = self.upstreams.setdefault(reg, Health())
        code = resp.status_code
        if code >= 500 or code == 429:
            self._failed(reg, now, f"HTTP {code}" + (f": {bad}" if bad else ""))
        else:
            health.success, health.status = now, code
            self.last_success.labels(reg).set(now)
        remaining = parse_ratelimit(resp.headers.get("ratelimit-remaining", ""))
        limit_header = resp.headers.get("ratelimit-limit", "")
        if remaining is not None or limit_header:
            health.remaining, health.ratelimit_seen = remaining, now
            health.limit, health.window = parse_ratelimit(limit_header), window(limit_header)

    def _failed(self, reg: str, now: float, problem: str) -> None:
        health = self.upstreams.setdefault(reg, Health())
        health.error, health.problem = now, scrub(problem)
        self.last_error.labels(reg).set(now)

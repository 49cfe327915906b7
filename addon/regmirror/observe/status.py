"""The mirror's own endpoints for operators, on the mirror's port under /_regmirror/, a
prefix no registry API path can take (they all start with /v2/):

- /_regmirror/healthz: 200 "ok" while the proxy answers requests (liveness);
- /_regmirror/readyz: 200 when the mirror has started and its cache (if on) can be
  written, else 503; a JSON body says why (readiness.py);
- /_regmirror/metrics: Prometheus metrics (see metrics.py);
- /_regmirror/: the status page (page.py), with what the cache holds (images.py) and the
  recent traffic (activity.py).
Under client authentication the metrics and the page need credentials too, unless the
client's address is in regmirror_metrics_allow; healthz and readyz are open to probes.

They are answered before routing, so they never reach an upstream or count in the metrics.
The page's index read and the readiness probe run in a thread, one at a time (callers
meanwhile share the running one), and so does the page's rendering, so that none of them
can hold up a pull.
"""

import asyncio
import ipaddress
import json
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from mitmproxy import ctx, exceptions, http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from .. import answers
from ..cache.addon import Cache
from ..cache.s3.content import S3Content
from . import page
from .activity import Activity
from .describe import printable
from .images import DEFAULT_SORT, SORTS, Contents, References, read_cache, select
from .readiness import Check, probe_cache, verdict

HEALTH_PATH = "/_regmirror/healthz"
READY_PATH = "/_regmirror/readyz"
METRICS_PATH = "/_regmirror/metrics"
PAGE_PATH = "/_regmirror/"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
MAX_ROWS = 500  # images on the page; the filter finds the others
MAX_QUERY = 200  # characters of the filter kept
PAGE_WAIT = 5.0  # seconds the page waits for the index before it shows what it has
READY_WAIT = 2.0  # seconds readyz waits for the cache probe; probes should wait longer
T = TypeVar("T")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def answer(method: str, path: str, registry: CollectorRegistry) -> http.Response | None:
    """The response for a status endpoint, or None when `path` is not one."""
    if path not in (HEALTH_PATH, METRICS_PATH):
        return None
    if method not in ("GET", "HEAD"):
        status, body, ctype = 405, b"GET or HEAD only\n", TEXT
    elif path == HEALTH_PATH:
        status, body, ctype = 200, b"ok\n", TEXT
    else:
        status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
    return _response(method, status, body, ctype)


def _response(method: str, status: int, body: bytes, ctype: str) -> http.Response:
    resp = http.Response.make(status, b"" if method == "HEAD" else body, {"Content-Type": ctype})
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def page_params(query: Mapping[str, str]) -> tuple[str, str, int]:
    """The page's query string: filter text, sort column, auto-refresh seconds (0: off,
    else 5 to 3600)."""
    q = printable(query.get("q", ""))[:MAX_QUERY]  # bytes that are no UTF-8 stay escaped
    sort = query.get("sort", "")
    try:
        refresh = int(query.get("refresh", "0"))
    except ValueError:
        refresh = 0
    return q, sort if sort in SORTS else DEFAULT_SORT, min(max(refresh, 5), 3600) if refresh else 0


def ready_response(method: str, checks: Sequence[Check]) -> http.Response:
    status, body = verdict(checks)
    return _response(method, status, json.dumps(body).encode() + b"\n", JSON)


def page_text(view: page.View) -> str:
    """The page, its image table filtered, sorted and cut from what the cache holds."""
    images = view.contents.images if view.contents else []
    rows, matched = select(images, view.query, view.sort, MAX_ROWS)
    return page.render(view._replace(images=rows, matched=matched))


def page_response(method: str, text: str, nonce: str) -> http.Response:
    resp = _response(method, 200, text.encode(), "text/html; charset=utf-8")
    resp.headers["Content-Security-Policy"] = page.content_security_policy(nonce)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


class Shared(Generic[T]):
    """One blocking job at a time in a thread; callers while it runs await the same one."""

    def __init__(self) -> None:
        self._task: asyncio.Future[T] | None = None

    async def run(self, job: Callable[[], T], wait: float) -> T:
        """The job's result; TimeoutError after `wait` seconds (the job runs on)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(asyncio.to_thread(job))
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.wait_for(asyncio.shield(self._task), wait)


def parse_networks(specs: Sequence[str]) -> list[Network]:
    """`10.0.0.0/8`, `192.0.2.7`, `::1` -> networks. Raises ValueError."""
    return [ipaddress.ip_network(s.strip(), strict=False) for s in specs]


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


class StatusEndpoints:
    def __init__(
        self,
        registry: CollectorRegistry,
        admits: Callable[[http.Request], Awaitable[bool]] | None = None,
        cache: Cache | None = None,
        activity: Activity | None = None,
    ) -> None:
        """`admits`: whether a request's credentials pass client authentication; `cache`:
        the cache addon (None: no cache); `activity`: the recent traffic."""
        self.registry = registry
        self.admits = admits
        self.cache = cache
        self.activity = activity or Activity(registry)
        self.open_to: list[Network] = []
        self.started = 0.0
        self._contents: Shared[Contents] = Shared()
        self._probe: Shared[Check] = Shared()
        self._refs: References | None = None
        self._rendering = asyncio.Lock()
        Gauge(
            "regmirror_cache_max_size_bytes",
            "The cache's size limit (regmirror_cache_max_size); 0 with the cache off.",
            registry=registry,
        ).set_function(lambda: self.cache.max_size if self.cache and self.cache.store else 0)

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_metrics_allow",
            Sequence[str],
            [],
            """
            Client addresses or networks (CIDR, e.g. "10.0.0.0/8") that may read
            /_regmirror/metrics and the status page /_regmirror/ without credentials when
            client authentication ([auth] in the config) is on, for a Prometheus scraper.
            Others need the credentials a registry client would use (Basic, a static token
            as Bearer, or a token the mirror issued). Without [auth] both are open to all.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if "regmirror_metrics_allow" in updated:
            try:
                self.open_to = parse_networks(ctx.options.regmirror_metrics_allow)
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_metrics_allow: {e}") from e

    def running(self) -> None:
        self.started = time.time()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path in (METRICS_PATH, PAGE_PATH) and not await self._may_read(flow):
            resp = _response(req.method, 401, b"authentication required\n", TEXT)
            resp.headers["WWW-Authenticate"] = 'Basic realm="regmirror"'
            return answers.answer(flow, resp, None)
        if path == PAGE_PATH.rstrip("/"):
            resp = http.Response.make(301, b"", {"Location": PAGE_PATH})
        elif path in (PAGE_PATH, READY_PATH) and req.method not in ("GET", "HEAD"):
            resp = _response(req.method, 405, b"GET or HEAD only\n", TEXT)
        elif path == PAGE_PATH:
            view = await self._view(req)
            async with self._rendering:  # in a thread, so that a big table never stalls pulls
                text = await asyncio.to_thread(page_text, view)
            resp = page_response(req.method, text, view.nonce)
        elif path == READY_PATH:
            resp = ready_response(req.method, [self._config(), await self._cache_check()])
        elif not (resp := answer(req.method, path, self.registry)):
            return
        answers.answer(flow, resp, None)

    async def _may_read(self, flow: http.HTTPFlow) -> bool:
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if in_networks(peer, self.open_to):
            return True
        return self.admits is None or await self.admits(flow.request)

    def _config(self) -> Check:
        if not self.started:
            return Check("config", False, "the mirror is starting")
        return Check("config", True, "loaded")

    async def _cache_check(self) -> Check:
        cache = self.cache
        if cache is None or not cache.configured:
            return Check("cache", True, "off")
        if cache.files is None or cache.store is None:
            if cache.problem:  # an S3 cache whose bucket did not answer: detail in the log
                return Check("cache", False, "the cache bucket cannot be used (see the log)")
            return Check("cache", False, "the cache's file server is not running")
        if isinstance(cache.content, S3Content):
            problem = await cache.content.usable()
            return Check("cache", not problem, problem or "the bucket answers")
        store = cache.store
        index = Path(store.root) / "index.db"
        try:
            return await self._probe.run(lambda: probe_cache(store.tmp, index), READY_WAIT)
        except TimeoutError:
            return Check("cache", False, f"the cache did not answer within {READY_WAIT:g} s")

    async def _view(self, req: http.Request) -> page.View:
        """Everything the page shows; its image rows are chosen by page_text."""
        now = time.time()
        query, sort, refresh = page_params(req.query)
        store = self.cache.store if self.cache else None
        contents, problem = None, ""
        if store is not None and self.cache and not self.cache.on_disk:
            problem = "the images of an S3 cache are not listed on this page yet"
        elif store is not None:
            if self._refs is None or self._refs.store is not store:
                self._refs = References(store)
            refs, index = self._refs, Path(store.root) / "index.db"
            try:
                contents = await self._contents.run(lambda: read_cache(index, refs), PAGE_WAIT)
            except TimeoutError:
                problem = f"the cache index did not answer within {PAGE_WAIT:g} s"
            except sqlite3.Error as e:
                problem = f"the cache index cannot be read: {e}"
        return page.View(
            now=now,
            started=self.started or now,
            cache_on=store is not None,
            contents=contents,
            limit=self.cache.max_size if self.cache else 0,
            problem=problem,
            activity=self.activity.snapshot(now),
            images=[],
            matched=0,
            query=query,
            sort=sort,
            refresh=refresh,
            nonce=secrets.token_urlsafe(16),
        )

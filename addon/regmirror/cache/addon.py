"""The pull-through cache, wired into the mirror: content by digest (blobs, and manifests
asked for by digest) is stored when it passes and served from disk the next time.

- requestheaders: a GET or HEAD of a digest that is cached for the repository asked for,
  or being filled for it, and readable by this client, is routed to the cache's file
  server (lookup.py, files.py): a hit never contacts the upstream. Anything else is a miss.
- responseheaders: a miss answered 200 with a Content-Length starts a fill; the body is
  hashed and written while it streams to the client (tee.py), its last byte held back
  until the digest matches. A mismatch or a short body is never stored, and the client's
  connection is closed, never ended as if the body were whole.
- response: the fill is committed (fsync, rename, index row, in a thread, after the
  client's answer); manifests are verified and stored whole. Above regmirror_cache_max_size
  the least recently used content goes (eviction.py).
Tags, stale answers and offline pulls are not here yet (issue 10).
"""

import asyncio
import logging
import shutil
import sqlite3
import time
import weakref
from collections.abc import Callable

from mitmproxy import ctx, exceptions, http
from prometheus_client import CollectorRegistry

from ..auth.token_proxy import TokenAuth
from ..record import outcome, route
from ..routing import names
from ..transport.headers import content_length
from . import decisions
from .access import AccessBatcher
from .errors import CacheError, FillFailed
from .eviction import evict
from .files import FileServer
from .fill import Fill
from .index import Index
from .integrity import Verified
from .lookup import Lookup, to_files
from .metrics import CacheMetrics
from .opening import open_cache
from .options import load_options
from .store import Store, cacheable
from .tee import Tee

logger = logging.getLogger(__name__)


KINDS = {names.BLOB: "blob", names.MANIFEST: "manifest"}


class Cache:
    def __init__(self, tokens: TokenAuth, registry: CollectorRegistry) -> None:
        self.tokens = tokens
        self.store: Store | None = None
        self.index: Index | None = None
        self.files: FileServer | None = None
        self.max_size = 0
        self.size = 0
        self.access = AccessBatcher()
        self.verified = Verified()
        self._fills: weakref.WeakKeyDictionary[http.HTTPFlow, tuple[Fill, Tee]] = (
            weakref.WeakKeyDictionary()
        )
        self._evicting = False
        self._commits: set[asyncio.Task[None]] = set()
        # digest -> (registry, repository, provenance, media type) of the fill in progress
        self._filling: dict[str, tuple[str, str, str, str]] = {}
        self.metrics = CacheMetrics(registry)

    def load(self, loader) -> None:
        load_options(loader)

    def configure(self, updated: set[str]) -> None:
        if "regmirror_cache" in updated:
            self._open(ctx.options.regmirror_cache)
        if {"regmirror_cache", "regmirror_cache_max_size"} & updated and self.store:
            text = ctx.options.regmirror_cache_max_size
            try:
                free = shutil.disk_usage(self.store.root).free
                self.max_size = decisions.parse_size(text) if text else (
                    decisions.default_max_size(free + self.size))  # fmt: skip
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_cache_max_size: {e}") from e

    def _open(self, directory: str) -> None:
        if self.index:
            self.index.close()
        self.store = self.index = None
        if not directory:
            return
        try:
            store, index = open_cache(directory)
        except (CacheError, sqlite3.Error) as e:
            raise exceptions.OptionsError(f"regmirror_cache: {e}") from e
        self.store, self.index = store, index
        self.size = index.total_size()
        self.metrics.size.set(self.size)

    async def running(self) -> None:
        if self.store:
            self.files = FileServer(self.store)
            await self.files.start()

    async def done(self) -> None:
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)
        if self.index:
            await asyncio.to_thread(self.index.touch_many, self.access.drain(time.time()))
        if self.files:
            await self.files.stop()
        if self.index:
            self.index.close()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if flow.response or flow.error or not r or not self.index:
            return
        kind = KINDS.get(r.get("op", ""))
        digest = r.get("reference", "")
        if not kind or not cacheable(digest) or flow.request.method not in ("GET", "HEAD"):
            return
        now = time.time()
        result = outcome(flow)
        result["provenance"] = r.get("provenance") or self.tokens.provenances.of(
            flow.request.headers.get("Authorization", ""), now
        )
        result["cache"] = "miss"
        if r.get("via"):  # fetched where the upstream redirected a miss: fill it, once counted
            return
        if not self.files or not self.store:
            return self.metrics.lookups.labels(r["upstream"], kind, "miss").inc()
        lookup = Lookup(self.store, self.index, self.files, self.verified, self.metrics)
        url = lookup.following(r, digest, self._filling.get(digest))
        url = url or await lookup.cached(r, digest)
        if not url:
            return self.metrics.lookups.labels(r["upstream"], kind, "miss").inc()
        result["cache"] = "hit"
        self.metrics.lookups.labels(r["upstream"], kind, "hit").inc()
        to_files(flow.request, url)
        if self.access.touch(digest, now):
            asyncio.get_running_loop().create_task(self._flush_access())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        r, resp = route(flow), flow.response
        if not r or not resp or not self.store or outcome(flow).get("cache") != "miss":
            return
        if r.get("op") != names.BLOB or resp.status_code != 200:
            return
        size = content_length(resp.headers)
        digest = r["reference"]
        if flow.request.method != "GET" or size is None or self.store.filling(digest):
            return  # no length: a bad body could not be told from a whole one
        fill = self.store.fill(digest, size)
        if fill is None:
            return
        tee = Tee(fill)
        self._fills[flow] = (fill, tee)
        media_type = resp.headers.get("Content-Type", "application/octet-stream")
        provenance = outcome(flow).get("provenance", "client")
        self._filling[digest] = (r["registry"], r["name"], provenance, media_type)

        def stream(data: bytes) -> bytes:
            if data:
                return tee.chunk(data)
            try:
                return tee.end()
            except FillFailed:
                flow.kill()  # the client never sees this body end as if it were whole
                return b""

        resp.stream = stream

    async def response(self, flow: http.HTTPFlow) -> None:
        r, resp = route(flow), flow.response
        if not r or not resp or not self.store or not self.index:
            return
        result = outcome(flow)
        if flow in self._fills:
            fill, _ = self._fills.pop(flow)
            self._filling.pop(fill.digest, None)
            return await self._commit(flow, fill)
        manifest = r.get("op") == names.MANIFEST and flow.request.method == "GET"
        if manifest and result.get("cache") == "miss" and resp.status_code == 200:
            await self._store_manifest(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if entry := self._fills.pop(flow, None):
            self._filling.pop(entry[0].digest, None)
            entry[0].abort()
            self._failed(flow, entry[0].reason or "aborted")

    async def _store_manifest(self, flow: http.HTTPFlow) -> None:
        assert self.store and flow.response
        r = route(flow)
        assert r is not None
        digest, body = r["reference"], flow.response.content or b""
        if self.store.filling(digest):
            return
        fill = self.store.fill(digest, len(body))
        if fill is None:
            return
        fill.write(body)
        await self._commit(flow, fill)

    async def _commit(self, flow: http.HTTPFlow, fill: Fill) -> None:
        assert self.index and flow.response
        r, result = route(flow), outcome(flow)
        assert r is not None
        media_type = flow.response.headers.get("Content-Type", "application/octet-stream")
        kind = KINDS[r["op"]]
        index, now = self.index, time.time()

        def record() -> None:
            index.add(fill.digest, fill.written, media_type, kind, now)
            index.link(r["registry"], r["name"], fill.digest, result.get("provenance", "client"))

        try:
            fill.verify()
        except FillFailed as e:
            return self._failed(flow, e.reason)
        # The client's answer ends only after this hook: the durable part (fsync, rename,
        # index row) runs on without it.
        task = asyncio.get_running_loop().create_task(self._durable(fill, record))
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    async def _durable(self, fill: Fill, record: Callable[[], None]) -> None:
        existed = self.store is not None and self.store.has(fill.digest)  # kept, not replaced
        try:
            await fill.commit(record)
        except FillFailed as e:
            logger.warning("regmirror: fill of %s failed: %s", fill.digest, e.reason)
            self.metrics.failures.labels(e.reason).inc()
            return
        self.verified.mark(fill.digest, fill.final_path)
        self.size += 0 if existed else fill.written
        self.metrics.size.set(self.size)
        if self.size > self.max_size and not self._evicting:
            await self._evict()

    def _failed(self, flow: http.HTTPFlow, reason: str) -> None:
        outcome(flow)["cache"] = f"fill failed: {reason}"
        self.metrics.failures.labels(reason).inc()

    async def _flush_access(self) -> None:
        if self.index:
            await asyncio.to_thread(self.index.touch_many, self.access.drain(time.time()))

    async def _evict(self) -> None:
        assert self.index and self.store
        self._evicting = True
        try:
            await self._flush_access()
            evicted = await evict(self.index, self.store, self.max_size)
            self.metrics.evictions.inc(evicted)
            self.size = await asyncio.to_thread(self.index.total_size)
            self.metrics.size.set(self.size)
        finally:
            self._evicting = False

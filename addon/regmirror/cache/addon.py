"""The pull-through cache, wired into the mirror: content by digest (blobs, and manifests
asked for by digest) is stored when it passes and served from disk the next time.

- requestheaders: a GET or HEAD of a digest that is linked to the repository asked for,
  and readable by this client (decisions.may_read), is routed to the cache's file server
  (files.py): a hit never contacts the upstream. Anything else is a miss.
- responseheaders: a miss answered 200 with a Content-Length starts a fill; the body is
  hashed and written while it streams to the client (tee.py), its last byte held back
  until the digest matches. A mismatch or a short body is never stored, and the client's
  connection is closed, never ended as if the body were whole.
- response: the fill is committed (fsync, rename, index row, in a thread); manifests, which
  are not streamed, are verified and stored whole. Above regmirror_cache_max_size the least
  recently used content goes (decisions.evict).
Tags, stale answers, offline pulls and single flight are not here yet (issue 10).
"""

import asyncio
import logging
import shutil
import time
import weakref
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..auth.token_proxy import TokenAuth
from ..record import outcome, route
from ..routing import names
from ..transport.headers import content_length
from . import decisions
from .access import AccessBatcher
from .errors import CacheError, FillFailed
from .files import FileServer
from .fill import Fill
from .index import Index
from .store import Store, cacheable
from .tee import Tee

logger = logging.getLogger(__name__)

DEFAULT_DIR = "~/.cache/regmirror"
KINDS = {names.BLOB: "blob", names.MANIFEST: "manifest"}
PASSED_HEADERS = (b"range", b"if-range", b"if-none-match", b"if-modified-since", b"accept")


class Cache:
    def __init__(self, tokens: TokenAuth, registry: CollectorRegistry) -> None:
        self.tokens = tokens
        self.store: Store | None = None
        self.index: Index | None = None
        self.files: FileServer | None = None
        self.max_size = 0
        self.size = 0
        self.access = AccessBatcher()
        self._fills: weakref.WeakKeyDictionary[http.HTTPFlow, tuple[Fill, Tee]] = (
            weakref.WeakKeyDictionary()
        )
        self._evicting = False
        r = registry
        self.lookups = Counter("regmirror_cache_lookups", "Requests for content by digest the "
                               "cache could serve, by result: hit or miss.",
                               ["route", "operation", "result"], registry=r)  # fmt: skip
        self.failures = Counter("regmirror_cache_fill_failures", "Fills not stored, by reason.",
                                ["reason"], registry=r)  # fmt: skip
        self.evictions = Counter("regmirror_cache_evictions", "Content evicted.", registry=r)
        self.size_gauge = Gauge("regmirror_cache_size_bytes", "Bytes in the cache.", registry=r)

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_cache",
            str,
            DEFAULT_DIR,
            """
            Directory of the pull-through cache: blobs and manifests by digest, verified
            before they are stored, and an SQLite index. Empty turns the cache off.
            """,
        )
        loader.add_option(
            "regmirror_cache_max_size",
            str,
            "",
            """
            Size limit of the cache: bytes, or a number with a k, m, g or t suffix in
            powers of 1024 ("20g"). Above it the least recently used content is evicted,
            down to 90 %. Empty: the smaller of 20 GiB and half the free space at start.
            """,
        )

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
            store = Store.open(directory)
            store.recover()
            index = Index.open(Path(store.root) / "index.db")
            index.reconcile(store)
        except CacheError as e:
            raise exceptions.OptionsError(f"regmirror_cache: {e}") from e
        self.store, self.index = store, index
        self.size = index.total_size()
        self.size_gauge.set(self.size)

    async def running(self) -> None:
        if self.store:
            self.files = FileServer(self.store)
            await self.files.start()

    async def done(self) -> None:
        if self.index:
            await asyncio.to_thread(self.index.touch_many, self.access.drain(time.time()))
        if self.files:
            await self.files.stop()
        if self.index:
            self.index.close()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
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
        link = None if r.get("via") else self.index.linked(r["registry"], r["name"], digest)
        if link is None or not self.files or not self.store or not self.store.has(digest):
            return self.lookups.labels(r["upstream"], kind, "miss").inc()
        if not decisions.may_read(link.provenance, client_checked=False):
            return self.lookups.labels(r["upstream"], kind, "miss").inc()
        result["cache"] = "hit"
        self.lookups.labels(r["upstream"], kind, "hit").inc()
        req = flow.request
        # The file server gets only what it answers by: no credentials, nothing else.
        kept = [(k, v) for k, v in req.headers.fields if k.lower() in PASSED_HEADERS]
        req.headers = http.Headers(kept)
        req.url = self.files.url(digest, link.media_type)  # type: ignore[union-attr]
        req.host_header = req.host
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
            return await self._commit(flow, fill)
        manifest = r.get("op") == names.MANIFEST and flow.request.method == "GET"
        if manifest and result.get("cache") == "miss" and resp.status_code == 200:
            await self._store_manifest(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if entry := self._fills.pop(flow, None):
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
            await fill.commit(record)
        except FillFailed as e:
            return self._failed(flow, e.reason)
        self.size += fill.written
        self.size_gauge.set(self.size)
        if self.size > self.max_size and not self._evicting:
            asyncio.get_running_loop().create_task(self._evict())

    def _failed(self, flow: http.HTTPFlow, reason: str) -> None:
        outcome(flow)["cache"] = f"fill failed: {reason}"
        self.failures.labels(reason).inc()

    async def _flush_access(self) -> None:
        if self.index:
            await asyncio.to_thread(self.index.touch_many, self.access.drain(time.time()))

    async def _evict(self) -> None:
        """Down to 90 % of the limit, least recently used first, never what is in use."""
        assert self.index and self.store
        self._evicting = True
        try:
            await self._flush_access()
            index, store = self.index, self.store
            victims = decisions.evict(
                await asyncio.to_thread(index.entries), self.max_size, store.in_use()
            )
            await asyncio.to_thread(index.remove, victims)
            for digest in victims:
                store.remove(digest)
            self.evictions.inc(len(victims))
            self.size = await asyncio.to_thread(index.total_size)
            self.size_gauge.set(self.size)
        finally:
            self._evicting = False

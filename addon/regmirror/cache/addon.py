"""The pull-through cache, wired into the mirror: blobs and manifests are stored by digest
when they pass and served from disk the next time; tags point at manifests.

- requestheaders: a GET or HEAD of a digest that is cached for the repository asked for,
  or being filled for it, and readable by this client, is routed to the cache's file
  server (lookup.py, files.py): a hit never contacts the upstream. A manifest by tag is
  revalidated with a HEAD, or served stale when the upstream fails (tags.py). Content
  fetched with a client's own credentials needs the upstream's yes (client_checks.py).
  Anything else is a miss.
- responseheaders: a miss answered 200 with a Content-Length starts a fill; the body is
  hashed and written while it streams to the client (tee.py), its last byte held back
  until the digest matches. A mismatch or a short body is never stored, and the client's
  connection is closed, never ended as if the body were whole.
- response: the fill is committed (fsync, rename, index row, in a thread, after the
  client's answer); manifests are verified (against the digest asked for, or the
  upstream's Docker-Content-Digest for a tag) and stored whole, a mismatch answered 502.
  Above regmirror_cache_max_size the least recently used content goes (occupancy.py).
"""

import asyncio
import contextlib
import hashlib
import logging
import shutil
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine

from mitmproxy import ctx, exceptions, http
from prometheus_client import CollectorRegistry

from ..answers import bad_upstream, replace_bad_upstream
from ..auth.provenance import CLIENT
from ..auth.token_proxy import TokenAuth
from ..record import Route, outcome, route
from ..routing import names
from ..transport.headers import content_length
from ..transport.side_requests import SideRequests
from . import decisions
from .catalog import Catalog, Committed, LocalCatalog
from .client_checks import ClientChecks
from .content import Content, LocalContent
from .errors import CacheError, FillFailed
from .files import FileServer
from .fill import Fill
from .index import Index, Link
from .integrity import Verified
from .lookup import Lookup, to_files
from .metrics import CacheMetrics
from .occupancy import Occupancy
from .opening import open_cache
from .options import load_options
from .s3 import location as s3_location
from .s3.backend import open_backend
from .single_flight import Leads
from .store import Store, cacheable
from .tags import Tags
from .tee import Tee

logger = logging.getLogger(__name__)


KINDS = {names.BLOB: "blob", names.MANIFEST: "manifest"}
# Seconds a blob miss waits for the answer to another's that is on its way (its headers),
# before it goes upstream itself: about the response timeout's default.
LEAD_WAIT = 60.0
S3_RETRY = 10.0  # seconds between attempts to reach a cache bucket that did not answer
S3_OPEN_WAIT = 15.0  # the client's first attempt: 5 s to connect, up to 3 times


class Cache:
    def __init__(self, tokens: TokenAuth, side: SideRequests, registry: CollectorRegistry) -> None:
        self.tokens, self.side = tokens, side
        self.checks = ClientChecks(side, tokens.provenances)
        self.tags: Tags | None = None
        self.leads = Leads()
        self.store: Store | None = None
        self.index: Index | None = None  # the disk cache's; every lookup is by the catalog
        self.catalog: Catalog | None = None
        self.content: Content | None = None
        self.files: FileServer | None = None
        self.occupancy: Occupancy | None = None
        self.verified = Verified()
        self._fills: weakref.WeakKeyDictionary[http.HTTPFlow, tuple[Fill, Tee]] = (
            weakref.WeakKeyDictionary()
        )
        # flows answered from a committed file, with its link (the data plane reads them)
        self.hits: weakref.WeakKeyDictionary[http.HTTPFlow, Link] = weakref.WeakKeyDictionary()
        # commits and access flushes still running: done() waits for them before it closes
        # the catalog (closing a connection another thread uses crashes sqlite3)
        self._background: set[asyncio.Task[None]] = set()
        # digest -> (registry, repository, provenance, media type) of the fill in progress
        self._filling: dict[str, tuple[str, str, str, str]] = {}
        self.metrics = CacheMetrics(registry)
        self.problem = ""  # why the configured cache cannot be used just now
        # an S3 cache: its bucket, and its size limit (0: none), opened in running()
        self._s3: s3_location.S3Location | None = None
        self._s3_max = 0
        self._s3_stack: contextlib.AsyncExitStack | None = None
        self._s3_tasks: set[asyncio.Task[None]] = set()  # retries, then occupancy.run
        # the first attempt: mitmproxy serves while `running` runs, and requests that come
        # meanwhile wait for it rather than pass the cache by
        self._s3_opening: asyncio.Future[None] | None = None

    @property
    def max_size(self) -> int:
        """The size limit in force; 0 with the cache off."""
        return self.occupancy.max_size if self.occupancy else 0

    def load(self, loader) -> None:
        load_options(loader)

    def configure(self, updated: set[str]) -> None:
        for option in ("regmirror_tag_ttl", "regmirror_stale_if_error"):
            if option in updated and getattr(ctx.options, option) < 0:
                raise exceptions.OptionsError(f"{option} must be 0 or more seconds")
        if "regmirror_cache" in updated:
            self._open(ctx.options.regmirror_cache)
        if {"regmirror_cache", "regmirror_cache_max_size"} & updated and self._s3:
            text = ctx.options.regmirror_cache_max_size
            try:
                self._s3_max = decisions.parse_size(text) if text else 0
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_cache_max_size: {e}") from e
            if self.occupancy:
                self.occupancy.max_size = self._s3_max
        elif {"regmirror_cache", "regmirror_cache_max_size"} & updated and self.occupancy:
            occupancy, text = self.occupancy, ctx.options.regmirror_cache_max_size
            try:
                free = shutil.disk_usage(occupancy.store.root).free
                occupancy.max_size = decisions.parse_size(text) if text else (
                    decisions.default_max_size(free + occupancy.size))  # fmt: skip
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_cache_max_size: {e}") from e

    @property
    def configured(self) -> bool:
        """A cache is configured (it may not be usable just now: `problem`)."""
        return self.store is not None or self._s3 is not None

    @property
    def on_disk(self) -> bool:
        """The cache is a directory (not a bucket)."""
        return self.index is not None

    def _open(self, directory: str) -> None:
        if self.catalog:
            self.catalog.close()
        self.store = self.index = self.catalog = self.content = None
        self.tags = self.occupancy = None
        self._s3 = None
        if directory.startswith("s3://"):
            try:
                self._s3 = s3_location.parse(directory)
            except ValueError as e:
                raise exceptions.OptionsError(f"regmirror_cache: {e}") from e
            return
        if not directory:
            return
        try:
            store, index = open_cache(directory)
            totals = index.total_size(), index.count()
        except (CacheError, sqlite3.Error) as e:
            raise exceptions.OptionsError(f"regmirror_cache: {e}") from e
        self.store, self.index = store, index
        self.catalog, self.content = LocalCatalog(index), LocalContent(store, self.verified)
        self.tags = Tags(self.catalog, self.side, self.checks)
        self.occupancy = Occupancy(self.catalog, self.content, store, self.metrics, totals)

    async def running(self) -> None:
        if self._s3:
            self._s3_opening = asyncio.ensure_future(self._open_s3(self._s3, retry=False))
            return await asyncio.shield(self._s3_opening)
        if self.store and self.content:
            self.files = FileServer(self.store, self.content)
            await self.files.start()

    async def _open_s3(self, location: s3_location.S3Location, retry: bool) -> None:
        """Open the bucket; while it cannot be used, the cache is off (requests go upstream,
        and readiness says why) and another attempt follows every S3_RETRY seconds."""
        if retry:
            await asyncio.sleep(S3_RETRY)
        stack = contextlib.AsyncExitStack()
        try:
            backend = await open_backend(stack, location, ctx.options.regmirror_s3_endpoint,
                                         self.metrics)  # fmt: skip
        except CacheError as e:
            await stack.aclose()
            logger.warning("regmirror: regmirror_cache: %s; the cache is off until it can be "
                           "used (next try in %g s)", e, S3_RETRY)  # fmt: skip
            self.problem = str(e)
            return self._s3_spawn(self._open_s3(location, retry=True))
        self._s3_stack, self.problem = stack, ""
        self.store, self.catalog, self.content = backend.store, backend.catalog, backend.content
        self.occupancy = backend.occupancy
        self.occupancy.max_size = self._s3_max
        self.tags = Tags(self.catalog, self.side, self.checks)
        self.files = FileServer(self.store, self.content)
        await self.files.start()
        self._s3_spawn(backend.occupancy.run())

    def _s3_spawn(self, job: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._s3_tasks.add(task)
        task.add_done_callback(self._s3_tasks.discard)

    async def done(self) -> None:
        for task in list(self._s3_tasks):
            task.cancel()
        await asyncio.gather(*self._s3_tasks, return_exceptions=True)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.occupancy:
            await self.occupancy.flush()
        if self.files:
            await self.files.stop()
        if self.catalog:
            self.catalog.close()
        if self._s3_stack:
            await self._s3_stack.aclose()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if flow.response or flow.error or not r:
            return
        if self._s3_opening and not self._s3_opening.done():
            await asyncio.wait([self._s3_opening], timeout=S3_OPEN_WAIT)
        if not self.catalog:
            return
        kind = KINDS.get(r.get("op", ""))
        reference = r.get("reference", "")
        by_digest = cacheable(reference)
        if not kind or flow.request.method not in ("GET", "HEAD"):
            return
        if not by_digest and kind != "manifest":
            return
        now = time.time()
        result = outcome(flow)
        result["provenance"] = r.get("provenance") or self.tokens.provenances.of(
            flow.request.headers.get("Authorization", ""), now
        )
        result["cache"] = "miss"
        via = bool(r.get("via"))  # fetched where the upstream redirected a miss: counted once
        lookup = self.lookup()
        if not lookup or not self.tags:
            if not via:
                self.metrics.lookups.labels(r["upstream"], kind, "miss").inc()
            return
        if by_digest:
            url, link = await self._by_digest(flow, r, kind, lookup)
            state = "hit"
        else:
            link, state = await self.tags.lookup(flow, r, lookup)
            url = ""
        url = url or (await lookup.file_url(link) if link else "")
        result["cache"] = state if url else "miss"
        if not via:
            self.metrics.lookups.labels(r["upstream"], kind, result["cache"]).inc()
        if not url:
            return
        if link:
            self.hits[flow] = link
        to_files(flow.request, url)
        if self.occupancy and self.occupancy.touch(link.digest if link else reference, now):
            self._spawn(self.occupancy.flush())

    async def _by_digest(
        self, flow: http.HTTPFlow, r: Route, kind: str, lookup: Lookup
    ) -> tuple[str, Link | None]:
        """(URL of a fill in progress, or the link of the committed file); a blob miss
        first waits for another miss of it that is already on its way (single_flight.py)."""
        digest = r["reference"]
        for again in (False, True):
            link = await self._readable(flow, r, await lookup.linked(r, digest))
            # after the awaits, and with none until a lead is taken: a fill that began
            # meanwhile is followed, never fetched again
            url = "" if link else lookup.following(r, digest, self._filling.get(digest))
            if url or link or again or kind != "blob" or flow.request.method != "GET":
                break
            provenance = outcome(flow).get("provenance", CLIENT)
            if not await self.leads.wait_or_lead(flow, r, digest, provenance, LEAD_WAIT):
                break
        return url, link

    def lookup(self) -> Lookup | None:
        """Where the cache holds what is asked for; None while it is off or not running."""
        if not self.store or not self.catalog or not self.content or not self.files:
            return None
        return Lookup(self.store, self.catalog, self.content, self.files, self.metrics)

    async def _readable(self, flow: http.HTTPFlow, r: Route, link: Link | None) -> Link | None:
        """The link, if this client may read what it leads to (decisions.may_read)."""
        if link is None:
            return None
        checked = False
        if link.provenance == CLIENT and outcome(flow).get("provenance") == CLIENT:
            checked = await self.checks.accepted(flow.request, r["registry"], r["name"])
        return link if decisions.may_read(link.provenance, checked) else None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._start_fill(flow)
        if r := route(flow):
            self.leads.end(flow, r.get("reference", ""))

    def _start_fill(self, flow: http.HTTPFlow) -> None:
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
        if not r or not resp or not self.store or not self.catalog or not self.tags:
            return
        result = outcome(flow)
        if flow in self._fills:
            fill, _ = self._fills.pop(flow)
            return await self._commit(flow, fill)  # followers go on until it is committed
        if r.get("op") != names.MANIFEST or result.get("cache") != "miss":
            return
        by_tag = not cacheable(r["reference"])
        if flow.request.method == "GET" and resp.status_code == 200:
            await self._store_manifest(flow, r)
        elif by_tag:
            await self.tags.answered(r, resp, resp.headers.get("Docker-Content-Digest", ""))

    def _manifest_digest(self, r: Route, resp: http.Response) -> str:
        """The digest a manifest answer must have: the one asked for, or for a tag the one
        the upstream says (or, when it says none, the body's own)."""
        if cacheable(r["reference"]):
            return r["reference"]
        said = resp.headers.get("Docker-Content-Digest", "")
        return said or "sha256:" + hashlib.sha256(resp.content or b"").hexdigest()

    def error(self, flow: http.HTTPFlow) -> None:
        if r := route(flow):
            self.leads.end(flow, r.get("reference", ""))
        if entry := self._fills.pop(flow, None):
            self._filling.pop(entry[0].digest, None)
            entry[0].abort()
            self._failed(flow, entry[0].reason or "aborted")

    async def _store_manifest(self, flow: http.HTTPFlow, r: Route) -> None:
        assert self.store and flow.response
        digest, body = self._manifest_digest(r, flow.response), flow.response.content or b""
        if self.store.filling(digest):
            return
        fill = self.store.fill(digest, len(body))
        if fill is None:  # a digest of another algorithm, or none at all
            return
        fill.write(body)
        await self._commit(flow, fill)

    async def _commit(self, flow: http.HTTPFlow, fill: Fill) -> None:
        assert self.catalog and flow.response
        r, result = route(flow), outcome(flow)
        assert r is not None
        media_type = flow.response.headers.get("Content-Type", "application/octet-stream")
        kind = KINDS[r["op"]]
        catalog, now = self.catalog, time.time()
        registry, name, reference = r["registry"], r["name"], r["reference"]
        tag = None if cacheable(reference) else (reference, now)
        if kind == "manifest" and self.tags:
            tag = tag or self.tags.pending(registry, name, fill.digest)
        try:
            fill.verify()
        except FillFailed as e:
            self._filling.pop(fill.digest, None)
            self._failed(flow, e.reason)
            if kind == "manifest":  # whole in memory: the client gets a 502, not bad bytes
                bad_upstream(flow, f"upstream sent a manifest that is not {fill.digest}")
                replace_bad_upstream(flow)
            return
        committed = Committed(fill.digest, fill.written, media_type, kind, now, registry, name,
                              result.get("provenance", "client"), tag)  # fmt: skip
        # The client's answer ends only after this hook: the durable part (fsync and rename,
        # or the upload's completion, then the catalog's row) runs on without it.
        self._spawn(self._durable(fill, lambda: catalog.record(committed)))

    def _spawn(self, job: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _durable(self, fill: Fill, record: Callable[[], Awaitable[bool]]) -> None:
        new = False

        async def recorded() -> None:
            nonlocal new
            new = await record()

        try:
            await fill.commit(recorded)
        except FillFailed as e:
            logger.warning("regmirror: fill of %s failed: %s", fill.digest, e.reason)
            self.metrics.failures.labels(e.reason).inc()
            return
        finally:  # committed (its row is in) or failed: no more following it
            self._filling.pop(fill.digest, None)
        if self.content:
            self.content.committed(fill)
        if self.occupancy:
            await self.occupancy.committed(fill.written, new=new)

    def _failed(self, flow: http.HTTPFlow, reason: str) -> None:
        outcome(flow)["cache"] = f"fill failed: {reason}"
        self.metrics.failures.labels(reason).inc()

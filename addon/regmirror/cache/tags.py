"""Manifests asked for by tag: a cached tag is revalidated with a HEAD upstream (Docker Hub
does not count HEADs against its pull limit) unless it was validated less than
`regmirror_tag_ttl` seconds ago; the digest unchanged, the manifest comes from the cache.
When the upstream cannot answer, a tag validated less than `regmirror_stale_if_error`
seconds ago is served stale. What the upstream says of a tag updates the index: a 200
points the tag at its digest (once the manifest is cached), a 404 drops it.

Freshness and the upstream's verdict are decided in decisions.py."""

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from mitmproxy import ctx, http

from ..record import Route, outcome
from ..transport.side_requests import SideRequests, passed_headers
from . import decisions
from .catalog import Catalog
from .client_checks import ClientChecks
from .errors import CatalogError
from .index import Link
from .lookup import Lookup

logger = logging.getLogger(__name__)

MAX_PENDING = 1000  # tags whose manifest is not cached yet (a HEAD came first: containerd)


class Tags:
    def __init__(self, catalog: Catalog, side: SideRequests, checks: ClientChecks) -> None:
        self.catalog, self.side, self.checks = catalog, side, checks
        # (registry, repository, digest) -> (tag, validated): pointed at by an upstream answer
        # before the manifest was cached; the tag is set when it is.
        self._pending: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    async def lookup(
        self, flow: http.HTTPFlow, r: Route, lookup: Lookup
    ) -> tuple[Link | None, str]:
        """(link of the cached manifest, "hit" or "stale") when the cache answers for the
        tag asked for; (None, "miss") when the upstream must."""
        tag, now = await lookup.tag(r), time.time()
        accept = flow.request.headers.get_all("Accept")
        if tag is None or not decisions.acceptable(tag.media_type, accept):
            return None, "miss"
        link = await lookup.linked(r, tag.digest)
        if link is None:
            return None, "miss"
        public = decisions.may_read(link.provenance, client_checked=False)
        if public and decisions.tag_fresh(tag.validated, now, ctx.options.regmirror_tag_ttl):
            return link, "hit"
        said = await self.side.head(flow.request.url, passed_headers(flow.request))
        offline = bool(outcome(flow).get("offline"))
        verdict = decisions.revalidation(said.status, said.error, said.digest, tag.digest, offline)
        if verdict == decisions.CURRENT:
            if not public:
                self.checks.remember(flow.request, r["registry"], r["name"], now)
            key = (tag.registry, tag.repository, tag.tag)
            await self._write(self.catalog.set_tag, *key, tag.digest, tag.media_type, now)
            return link, "hit"
        stale = ctx.options.regmirror_stale_if_error
        if (
            verdict == decisions.FAILED
            and public
            and decisions.stale_usable(tag.validated, now, stale)
        ):
            return link, "stale"
        if verdict == decisions.GONE:
            await self._write(self.catalog.drop_tag, tag.registry, tag.repository, tag.tag)
        return None, "miss"

    async def answered(self, r: Route, resp: http.Response, digest: str) -> None:
        """The upstream answered a tag request with `resp`, whose manifest is `digest` ("" if
        it did not say): remember the tag, or forget it on 404."""
        key = (r["registry"], r["name"], r["reference"])
        if resp.status_code == 404:
            return await self._write(self.catalog.drop_tag, *key)
        if resp.status_code != 200 or not digest:
            return
        now = time.time()
        try:
            link = await self.catalog.linked(r["registry"], r["name"], digest)
        except CatalogError as e:
            return logger.warning("regmirror: %s; tag not updated", e)
        if link is None:
            self._pending[(r["registry"], r["name"], digest)] = (r["reference"], now)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            return
        await self._write(self.catalog.set_tag, *key, digest, link.media_type, now)

    def pending(self, registry: str, repository: str, digest: str) -> tuple[str, float] | None:
        """The tag, and when it was validated, that an earlier answer pointed at a manifest
        not cached then: to be set once it is."""
        return self._pending.pop((registry, repository, digest), None)

    async def _write(self, method: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await method(*args)
        except CatalogError as e:
            logger.warning("regmirror: %s; tag not updated", e)

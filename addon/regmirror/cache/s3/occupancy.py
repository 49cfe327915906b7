"""How full an S3 cache is, and keeping it under regmirror_cache_max_size across replicas.
Every replica batches its access times (never one write per hit) and writes each batch as
one object; every EVICT_INTERVAL, and after a commit that takes its estimate above the
limit, it tries the lease (lease.py). The holder lists the bucket, merges every batch into
the last accesses, evicts the least recently used down to 90 % (decisions.evict, as on
disk), and folds the batches it read into one. With no limit set nothing is evicted."""

import asyncio
import contextlib
import logging
import time

from .. import decisions
from ..access import AccessBatcher
from ..errors import CatalogError
from ..metrics import CacheMetrics
from ..store import Store
from .catalog import S3Catalog
from .content import S3Content
from .lease import Lease

logger = logging.getLogger(__name__)

EVICT_INTERVAL = 60.0


class SharedOccupancy:
    def __init__(
        self,
        catalog: S3Catalog,
        content: S3Content,
        store: Store,
        lease: Lease,
        metrics: CacheMetrics,
    ) -> None:
        self.catalog, self.content, self.store, self.lease = catalog, content, store, lease
        self.metrics = metrics
        self.max_size = 0  # no limit
        self.size = 0
        self.access = AccessBatcher()
        self._evicting = asyncio.Lock()

    def touch(self, digest: str, now: float) -> bool:
        return self.access.touch(digest, now)

    async def flush(self) -> None:
        """Write the pending access times as one batch object."""
        await self.catalog.touch(self.access.drain(time.time()))

    async def committed(self, written: int, new: bool) -> None:
        if new:
            self.size += written
            self.metrics.size.set(self.size)
        if self.max_size and self.size > self.max_size and not self._evicting.locked():
            await self.evict()

    async def run(self) -> None:
        """Every EVICT_INTERVAL: the size from the bucket, and eviction when above it."""
        while True:
            with contextlib.suppress(CatalogError):
                await self.evict()
            await asyncio.sleep(EVICT_INTERVAL)

    async def evict(self) -> None:
        async with self._evicting:
            if not await self.lease.acquire(time.time()):
                return
            try:
                await self._evict()
            finally:
                await self.lease.release()

    async def _evict(self) -> None:
        await self.flush()
        batches = await self.catalog.access_batches()
        entries = await self.catalog.entries()
        self.size = sum(e.size for e in entries)
        victims = []
        if self.max_size:
            victims = decisions.evict(entries, self.max_size, self.store.in_use())
        await self.catalog.forget(victims)
        for digest in victims:
            await self.content.discard(digest)
        gone = set(victims)
        kept = [(e.digest, e.last_access, e.hits) for e in entries if e.digest not in gone]
        await self.catalog.fold(kept, batches)
        self.size -= sum(e.size for e in entries if e.digest in gone)
        self.metrics.evictions.inc(len(victims))
        self.metrics.size.set(self.size)
        self.metrics.entries.set(len(kept))
        if victims:
            logger.info("regmirror: evicted %d entries from the shared cache", len(victims))

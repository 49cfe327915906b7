"""How full the cache is, and keeping it under regmirror_cache_max_size: the size and the
entry count, the batched access times (never one write per hit), and least recently used
eviction (eviction.py) when a commit takes the cache above its limit.

The size is read back from the index with every batch of access times, because the cache
command line (`./run.sh cache rm`, gc, verify) changes the cache beside the mirror."""

import asyncio
import time

from .access import AccessBatcher
from .catalog import Catalog
from .content import Content
from .eviction import evict
from .metrics import CacheMetrics
from .store import Store


class Occupancy:
    def __init__(
        self,
        catalog: Catalog,
        content: Content,
        store: Store,
        metrics: CacheMetrics,
        totals: tuple[int, int],
    ) -> None:
        """`totals`: (bytes, entries) held at start."""
        self.catalog, self.content, self.store, self.metrics = catalog, content, store, metrics
        self.max_size = 0
        self.size, entries = totals
        self.access = AccessBatcher()
        self._evicting = False
        self._flushing = asyncio.Lock()
        metrics.size.set(self.size)
        metrics.entries.set(entries)

    def touch(self, digest: str, now: float) -> bool:
        """Count a hit; True when the batch should be written now (flush)."""
        return self.access.touch(digest, now)

    async def flush(self) -> None:
        """Write the batched access times, and read the size and entries back."""
        async with self._flushing:  # one at a time: a flush waiting behind one has less to do
            await self.catalog.touch(self.access.drain(time.time()))
            self.size, entries = await self.catalog.totals()
        self.metrics.size.set(self.size)
        self.metrics.entries.set(entries)

    async def committed(self, written: int, new: bool) -> None:
        """A fill was committed (`new`: its digest was not on disk before)."""
        if new:
            self.size += written
            self.metrics.size.set(self.size)
            self.metrics.entries.inc()
        if self.size > self.max_size and not self._evicting:
            await self.evict()

    async def evict(self) -> None:
        """Down to 90 % of the limit; again while fills committed meanwhile keep the cache
        above it (they skip eviction while one runs)."""
        self._evicting = True
        try:
            await self.flush()
            while self.size > self.max_size:
                evicted = await evict(self.catalog, self.content, self.max_size,
                                      self.store.in_use())  # fmt: skip
                self.metrics.evictions.inc(evicted)
                await self.flush()  # the size now
                if not evicted:  # all in use
                    break
        finally:
            self._evicting = False

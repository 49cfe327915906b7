"""How full the cache is, and keeping it under regmirror_cache_max_size: the size and the
entry count, the batched access times (never one write per hit), and least recently used
eviction (eviction.py) when a commit takes the cache above its limit.

The size is read back from the index with every batch of access times, because the cache
command line (`./run.sh cache rm`, gc, verify) changes the cache beside the mirror."""

import asyncio
import time

from .access import AccessBatcher
from .eviction import evict
from .index import Index
from .metrics import CacheMetrics
from .store import Store


class Occupancy:
    def __init__(self, index: Index, store: Store, metrics: CacheMetrics) -> None:
        self.index, self.store, self.metrics = index, store, metrics
        self.max_size = 0
        self.size = index.total_size()
        self.access = AccessBatcher()
        self._evicting = False
        self._flushing = asyncio.Lock()
        metrics.size.set(self.size)
        metrics.entries.set(index.count())

    def touch(self, digest: str, now: float) -> bool:
        """Count a hit; True when the batch should be written now (flush)."""
        return self.access.touch(digest, now)

    async def flush(self) -> None:
        """Write the batched access times, and read the size and entries back."""
        index = self.index

        def flush() -> tuple[int, int]:
            index.touch_many(self.access.drain(time.time()))
            return index.total_size(), index.count()

        async with self._flushing:  # one at a time: a flush waiting behind one has less to do
            self.size, entries = await asyncio.to_thread(flush)
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
                evicted = await evict(self.index, self.store, self.max_size)
                self.metrics.evictions.inc(evicted)
                await self.flush()  # the size now
                if not evicted:  # all in use
                    break
        finally:
            self._evicting = False

"""Access times in memory, written to the index in batches: never one write per hit."""


class AccessBatcher:
    """Collects hits per digest. `touch()` says when a flush is due: `max_entries` distinct
    digests pending, or `interval` seconds since the last drain. The caller then drains it on
    the event loop and writes the batch in a thread, `asyncio.to_thread(index.touch_many,
    batcher.drain(now))`; and drains it once more at shutdown and before choosing what to
    evict, so that eviction sees the latest accesses. Not thread-safe: loop only."""

    def __init__(self, interval: float = 30.0, max_entries: int = 1000, now: float = 0.0):
        self.interval = interval
        self.max_entries = max_entries
        self._pending: dict[str, tuple[float, int]] = {}
        self._drained = now

    def __len__(self) -> int:
        return len(self._pending)

    def touch(self, digest: str, now: float) -> bool:
        last, hits = self._pending.get(digest, (now, 0))
        self._pending[digest] = (max(last, now), hits + 1)
        return len(self._pending) >= self.max_entries or now - self._drained >= self.interval

    def drain(self, now: float) -> list[tuple[str, float, int]]:
        """The pending (digest, last access, hits), for `Index.touch_many`; starts afresh."""
        pending, self._pending = self._pending, {}
        self._drained = now
        return [(digest, last, hits) for digest, (last, hits) in pending.items()]

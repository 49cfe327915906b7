"""Applying the size limit: least recently used content first, down to 90 % of it, never a
file being served or filled (decisions.evict). The index rows go first, then the files."""

import asyncio

from . import decisions
from .index import Index
from .store import Store


async def evict(index: Index, store: Store, limit: int) -> int:
    """Evict down to the limit; returns how many entries went. Never blocks the loop."""
    entries = await asyncio.to_thread(index.entries)
    victims = decisions.evict(entries, limit, store.in_use())
    await asyncio.to_thread(index.remove, victims)
    for digest in victims:
        store.remove(digest)
    return len(victims)

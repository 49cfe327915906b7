"""Applying the size limit: least recently used content first, down to 90 % of it, never
content being served or filled (decisions.evict). What points at it goes first, then the
content itself."""

from . import decisions
from .catalog import Catalog
from .content import Content


async def evict(catalog: Catalog, content: Content, limit: int, in_use: set[str]) -> int:
    """Evict down to the limit; returns how many entries went. Never blocks the loop."""
    victims = decisions.evict(await catalog.entries(), limit, in_use)
    await catalog.forget(victims)
    for digest in victims:
        await content.discard(digest)
    return len(victims)

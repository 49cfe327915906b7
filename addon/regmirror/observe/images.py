"""The cached images as the status page lists them: every tag in the cache index with the
digest it points at, the bytes the image holds in the cache (its index, manifests, configs
and layers that are cached, each counted once), when it was last pulled and how often.

`read_cache` blocks (a read-only SQLite connection of its own, never the mirror's, and the
manifests' files): run it in a thread, one at a time. Manifests are content by digest, so
each is parsed once per process (`References`). The rest is pure."""

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..cache.store import Store

MAX_MANIFEST = 4 << 20  # distribution's limit for a manifest body
REMEMBERED = 10_000  # manifests whose references are kept in memory
DEFAULT_SORT = "pulled"


class CachedImage(NamedTuple):
    registry: str
    repository: str
    tag: str
    digest: str
    size: int  # bytes of this image in the cache
    last_pulled: float
    pulls: int  # the fetch that cached its manifest and the cache hits since

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


class Contents(NamedTuple):
    size: int
    entries: int
    images: list[CachedImage]


# column -> (sort key, largest / newest first)
SORTS: dict[str, tuple[Callable[[CachedImage], object], bool]] = {
    "image": (lambda i: i.name, False),
    "size": (lambda i: i.size, True),
    "pulled": (lambda i: i.last_pulled, True),
    "pulls": (lambda i: i.pulls, True),
}


def references(body: bytes) -> list[str]:
    """The digests a manifest names: an index's manifests, an image manifest's config and
    layers (a Docker schema 1 manifest's fsLayers); none for anything else."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    described = [doc.get("config"), *_items(doc, "layers"), *_items(doc, "manifests")]
    found = [d.get("digest") for d in described if isinstance(d, dict)]
    found += [d.get("blobSum") for d in _items(doc, "fsLayers") if isinstance(d, dict)]
    return [d for d in found if isinstance(d, str)]


def _items(doc: dict, key: str) -> list[object]:
    value = doc.get(key)
    return value if isinstance(value, list) else []


def image_size(top: str, sizes: Mapping[str, int], refs: Callable[[str], Iterable[str]]) -> int:
    """Bytes in the cache of `top` and, recursively, of what it refers to, each digest once
    (platforms of an index share layers); what is not cached counts nothing."""
    seen: set[str] = set()
    stack, total = [top], 0
    while stack:
        digest = stack.pop()
        if digest in seen or digest not in sizes:
            continue
        seen.add(digest)
        total += sizes[digest]
        stack.extend(refs(digest))
    return total


def filter_key(image: CachedImage) -> str:
    """What the filter box matches against (the page's script uses the same text)."""
    return f"{image.name} {image.digest}".lower()


def select(
    images: Sequence[CachedImage], query: str, sort: str, limit: int
) -> tuple[list[CachedImage], int]:
    """The images whose name or digest contains `query` (any case), sorted by the column
    `sort`, at most `limit` of them; and how many matched."""
    q = query.strip().lower()
    matched = sorted((i for i in images if q in filter_key(i)), key=lambda i: i.name)
    key, newest_first = SORTS.get(sort, SORTS[DEFAULT_SORT])
    matched.sort(key=key, reverse=newest_first)  # type: ignore[arg-type]
    return matched[:limit], len(matched)


class References:
    """The digests each cached manifest names, read from its file once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, list[str]] = {}

    def __call__(self, digest: str) -> list[str]:
        if digest not in self._known:
            if len(self._known) >= REMEMBERED:
                self._known.clear()
            self._known[digest] = self._read(digest)
        return self._known[digest]

    def _read(self, digest: str) -> list[str]:
        try:
            with open(self.store.path(digest), "rb") as f:
                return references(f.read(MAX_MANIFEST + 1)[:MAX_MANIFEST])
        except (OSError, ValueError):
            return []  # evicted meanwhile: counted without what it names


def read_cache(index_path: Path, refs: References) -> Contents:
    """The cache's size, entries and images, from the index at `index_path`. Raises
    sqlite3.Error when it cannot be read."""
    uri = Path(index_path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
    try:
        db.execute("BEGIN")  # one snapshot for both queries
        sizes, manifests = {}, set()
        for digest, size, kind in db.execute("SELECT digest, size, kind FROM content"):
            sizes[digest] = size
            if kind == "manifest":
                manifests.add(digest)
        tags = db.execute(
            "SELECT registry, repository, tag, digest, max(last_access, validated), hits"
            " FROM tags JOIN content USING (digest)"
        ).fetchall()
    finally:
        db.close()

    def named(digest: str) -> list[str]:
        return refs(digest) if digest in manifests else []

    # A tag revalidated upstream was pulled just then; hits are the cache's.
    images = [
        CachedImage(registry, repository, tag, digest, image_size(digest, sizes, named), last,
                    hits + 1)
        for registry, repository, tag, digest, last, hits in tags
    ]  # fmt: skip
    return Contents(sum(sizes.values()), len(sizes), images)

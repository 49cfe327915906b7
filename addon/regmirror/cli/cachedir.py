"""The cache directory of a running mirror, worked on from a second process: the index is
made for it (WAL, BEGIN IMMEDIATE, a busy timeout) and every change keeps the mirror's
order of writes, rows removed before their files (index.py). A file the mirror is serving
when it is removed is read to its end; what the mirror finds missing afterwards it treats
as a miss and fetches again."""

import asyncio
import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from ..cache import decisions, eviction
from ..cache.catalog import LocalCatalog
from ..cache.content import LocalContent
from ..cache.errors import CacheError
from ..cache.index import Index
from ..cache.integrity import Verified, matches
from ..cache.store import Store
from . import graph
from .references import Reference


class CliError(Exception):
    """Said to the user as it is, without a traceback; exit status 2."""


@contextmanager
def opened(directory: str) -> Iterator[tuple[Store, Index]]:
    """The store and index of an existing cache: nothing is created here, so a mistyped
    --cache never makes an empty cache."""
    if directory.startswith("s3://"):
        raise CliError(f"{directory}: the cache command line reads cache directories only; "
                       "an s3:// cache is not supported yet")  # fmt: skip
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise CliError(f"no cache directory {root} (the mirror's regmirror_cache; see --cache)")
    if not (root / "index.db").is_file() or not (root / "blobs").is_dir():
        raise CliError(f"{root} is not a regmirror cache: it has no index.db and blobs/")
    try:
        index = Index.open(root / "index.db")
    except CacheError as e:
        raise CliError(str(e)) from e
    try:
        yield Store(root), index
    finally:
        index.close()


def read_manifests(store: Store, index: Index, known: dict[str, graph.Manifest]) -> None:
    """Parse the cached manifests not in `known` yet into it (content by digest never
    changes). A file that is missing, does not hash to its digest or is no manifest is left
    out: what it references is unknown."""
    for entry in index.entries():
        if entry.kind != "manifest" or entry.digest in known:
            continue
        try:
            body = store.path(entry.digest).read_bytes()
        except (OSError, ValueError):
            continue
        algorithm, _, hex_ = entry.digest.partition(":")
        if hashlib.new(algorithm, body).hexdigest() != hex_:
            continue
        try:
            known[entry.digest] = graph.parse_manifest(body)
        except ValueError:
            continue


def snapshot(store: Store, index: Index, known: dict[str, graph.Manifest]) -> graph.Cached:
    """What the cache holds now, read in one transaction (so that no tag points at content
    removed in between). The manifests are parsed before the write lock is taken; inside
    it, only those added meanwhile."""
    read_manifests(store, index, known)
    with index.writing():
        read_manifests(store, index, known)
        content = {e.digest: e for e in index.entries()}
        links, tags = frozenset(index.all_links()), index.all_tags()
    return graph.Cached(content, links, tags, {d: m for d, m in known.items() if d in content})


class Removed(NamedTuple):
    images: list[graph.Image]
    purge: graph.Purge
    bytes: int


def remove(store: Store, index: Index, ref: Reference) -> Removed:
    """Purge the images `ref` names (graph.find, graph.purge) in one write transaction,
    then unlink the files. Raises CliError when the cache has no such image."""
    known: dict[str, graph.Manifest] = {}
    read_manifests(store, index, known)  # before taking the write lock
    with index.writing():
        cached = snapshot(store, index, known)
        found = graph.find(cached, ref.registry, ref.repository, ref.tag, ref.digest)
        if not found:
            raise CliError(f"{ref} is not in the cache (see `cache ls`)")
        plan = graph.purge(cached, found)
        if plan.nothing:
            users = ", ".join(map(str, plan.users))
            raise CliError(f"nothing removed: {ref} is part of {users}; remove that instead")
        size = sum(cached.content[d].size for d in plan.content)
        for tag in plan.tags:
            index.drop_tag(*tag)
        index.unlink(plan.links)
        index.remove(plan.content)
    for digest in plan.content:
        store.remove(digest)
    return Removed(found, plan, size)


class Corrupt(NamedTuple):
    digest: str
    path: Path
    size: int


def verify(
    store: Store,
    index: Index,
    repair: bool,
    started: Callable[[int, int], None],
    hashed: Callable[[int], None],
) -> tuple[int, list[Corrupt]]:
    """Hash every committed file; (files checked, the corrupt ones). With `repair` each
    corrupt file goes, its row first. `started(files, bytes)` once, `hashed(bytes)` after
    each file, for progress."""
    files = list(store.scan())
    started(len(files), sum(size for _, size in files))
    corrupt = []
    for digest, size in files:
        path = store.path(digest)
        # a file removed meanwhile (evicted, purged) is no corruption: matches() says False
        if not matches(path, digest) and path.exists():
            corrupt.append(Corrupt(digest, path, size))
            if repair:
                index.remove([digest])
                store.remove(digest)
        hashed(size)
    return len(files), corrupt


class Collected(NamedTuple):
    limit: int
    before: int
    after: int
    evicted: int


def collect(store: Store, index: Index, max_size: str) -> Collected:
    """Apply the size limit now: `max_size` in the mirror's syntax, or (empty) the mirror's
    default for this disk. Eviction is the mirror's own (eviction.py); this process serves
    nothing, so it knows of no file in use."""
    before = index.total_size()
    if max_size:
        try:
            limit = decisions.parse_size(max_size)
        except ValueError as e:
            raise CliError(f"--max-size: {e}") from e
    else:
        limit = decisions.default_max_size(shutil.disk_usage(store.root).free + before)
    content = LocalContent(store, Verified())
    evicted = asyncio.run(eviction.evict(LocalCatalog(index), content, limit, set()))
    return Collected(limit, before, index.total_size(), evicted)

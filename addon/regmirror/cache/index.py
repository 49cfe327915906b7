"""The cache's index in SQLite: what content is held, which repositories may see it and how
it was authorized upstream, and what tags point at.

WAL with synchronous=NORMAL: a transaction survives a crash of the process; a power loss can
lose the last few, which only makes rows and files disagree (`reconcile` fixes that). Each
thread gets its own connection, so lookups never queue behind a write in another thread,
and a second process (a `cache` command line) can open the same file at the same time.

Where to call what: `linked` and `tag` are primary-key lookups that never wait for
writers (WAL) and may run on the event loop. Everything that writes may wait up to
BUSY_TIMEOUT for another writer, and `entries`, `total_size`, `reconcile` walk the table:
run those with asyncio.to_thread.

Order of writes, so that a crash never leaves a row without its file: a file is committed
before its row is added, and its row is removed before the file.
"""

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from .errors import CacheError
from .store import Store

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 5.0
# Most public last: a link takes the most public provenance it was ever fetched with.
PROVENANCES = ("client", "route", "anonymous")
KINDS = ("blob", "manifest")
_RANK = "CASE {} WHEN 'anonymous' THEN 2 WHEN 'route' THEN 1 ELSE 0 END"

SCHEMA = f"""
CREATE TABLE content(
  digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN {KINDS}), created REAL NOT NULL,
  last_access REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX content_lru ON content(last_access);
CREATE TABLE links(
  registry TEXT NOT NULL, repository TEXT NOT NULL,
  digest TEXT NOT NULL REFERENCES content ON DELETE CASCADE,
  provenance TEXT NOT NULL CHECK (provenance IN {PROVENANCES}),
  PRIMARY KEY (registry, repository, digest));
CREATE INDEX links_digest ON links(digest);
CREATE TABLE tags(
  registry TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL,
  digest TEXT NOT NULL REFERENCES content ON DELETE CASCADE,
  media_type TEXT NOT NULL, validated REAL NOT NULL,
  PRIMARY KEY (registry, repository, tag));
CREATE INDEX tags_digest ON tags(digest);
PRAGMA user_version = {SCHEMA_VERSION}
"""


class Entry(NamedTuple):
    digest: str
    size: int
    media_type: str
    kind: str
    created: float
    last_access: float
    hits: int


class Link(NamedTuple):
    """`digest` may be served for `repository`, to whom `provenance` allows (decisions.py)."""

    registry: str
    repository: str
    digest: str
    provenance: str
    size: int
    media_type: str
    kind: str


class Tag(NamedTuple):
    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str
    validated: float


class Reconciled(NamedTuple):
    files_removed: int
    rows_dropped: int


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str) -> "Index":
        """Open or create the index. Raises CacheError naming the path when the file cannot
        be opened or was made by a newer schema."""
        index = cls(Path(path).expanduser())
        try:
            db = index._db()
            with _transaction(db):  # two processes creating it at once: one does
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in SCHEMA.split(";"):
                        db.execute(statement)
        except sqlite3.Error as e:
            index.close()
            raise CacheError(f"cache index {index.path} cannot be used: {e}") from e
        if version > SCHEMA_VERSION:
            index.close()
            raise CacheError(
                f"cache index {index.path} has schema {version}, newer than this "
                f"regmirror's {SCHEMA_VERSION}: use another cache directory"
            )
        return index

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        return self._db().execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
            self._local = threading.local()

    def add(self, digest: str, size: int, media_type: str, kind: str, now: float) -> None:
        """Record committed content (after its file is in place). Adding it again only
        refreshes its last access."""
        self._db().execute(
            "INSERT INTO content VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (digest) DO UPDATE"
            " SET last_access = max(last_access, excluded.last_access)",
            (digest, size, media_type, kind, now, now),
        )

    def link(self, registry: str, repository: str, digest: str, provenance: str) -> None:
        """Let `repository` see `digest` (which must have been added). A link only ever
        becomes more public: anonymous > route > client. A later client fetch never makes
        public content private; a later anonymous fetch of content first fetched with a
        client's credentials makes it readable by all, which is right: the upstream has just
        served it to anyone. A route fetch does the same, as route credentials always do."""
        if provenance not in PROVENANCES:
            raise ValueError(f"unknown provenance {provenance!r}")
        rank_new, rank_old = _RANK.format("excluded.provenance"), _RANK.format("provenance")
        self._db().execute(
            "INSERT INTO links VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET provenance ="
            f" CASE WHEN {rank_new} > {rank_old} THEN excluded.provenance ELSE provenance END",
            (registry, repository, digest, provenance),
        )

    def linked(self, registry: str, repository: str, digest: str) -> Link | None:
        row = self._one(
            "SELECT registry, repository, digest, provenance, size, media_type, kind"
            " FROM links JOIN content USING (digest)"
            " WHERE registry = ? AND repository = ? AND digest = ?",
            (registry, repository, digest),
        )
        return Link(*row) if row else None

    def set_tag(
        self,
        registry: str,
        repository: str,
        tag: str,
        digest: str,
        media_type: str,
        validated: float,
    ) -> None:
        """Point `tag` at `digest` (which must have been added), validated upstream at
        `validated`."""
        self._db().execute(
            "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?)",
            (registry, repository, tag, digest, media_type, validated),
        )

    def tag(self, registry: str, repository: str, tag: str) -> Tag | None:
        row = self._one(
            "SELECT * FROM tags WHERE registry = ? AND repository = ? AND tag = ?",
            (registry, repository, tag),
        )
        return Tag(*row) if row else None

    def drop_tag(self, registry: str, repository: str, tag: str) -> bool:
        cursor = self._db().execute(
            "DELETE FROM tags WHERE registry = ? AND repository = ? AND tag = ?",
            (registry, repository, tag),
        )
        return cursor.rowcount > 0

    def touch_many(self, touches: Iterable[tuple[str, float, int]]) -> None:
        """Apply batched accesses, (digest, last access, hits), in one transaction."""
        db = self._db()
        with _transaction(db):
            db.executemany(
                "UPDATE content SET last_access = max(last_access, ?), hits = hits + ?"
                " WHERE digest = ?",
                ((last, hits, digest) for digest, last, hits in touches),
            )

    def size(self, digest: str) -> int | None:
        """The size of held content, None if it is not held."""
        row = self._one("SELECT size FROM content WHERE digest = ?", (digest,))
        return row[0] if row else None

    def total_size(self) -> int:
        return self._one("SELECT coalesce(sum(size), 0) FROM content")[0]

    def count(self) -> int:
        return self._one("SELECT count(*) FROM content")[0]

    def entries(self) -> list[Entry]:
        """All content, least recently used first."""
        rows = self._db().execute("SELECT * FROM content ORDER BY last_access, digest")
        return [Entry(*row) for row in rows]

    def remove(self, digests: Iterable[str]) -> int:
        """Forget content, with the links and tags that point at it (before its files are
        removed). Returns how many content rows went."""
        db = self._db()
        with _transaction(db):
            cursor = db.executemany("DELETE FROM content WHERE digest = ?", ((d,) for d in digests))
            return max(cursor.rowcount, 0)

    def all_tags(self) -> list[Tag]:
        return [Tag(*row) for row in self._db().execute("SELECT * FROM tags")]

    def all_links(self) -> list[tuple[str, str, str]]:
        """(registry, repository, digest) of every link."""
        return self._db().execute("SELECT registry, repository, digest FROM links").fetchall()

    def unlink(self, links: Iterable[tuple[str, str, str]]) -> None:
        """Drop links (registry, repository, digest): the content stays for the others."""
        db = self._db()
        with _transaction(db):
            db.executemany(
                "DELETE FROM links WHERE registry = ? AND repository = ? AND digest = ?", links
            )

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One write transaction on this thread's connection: what is read and written
        inside it (the other methods join it) is one step for any other process."""
        with _transaction(self._db()):
            yield

    def reconcile(self, store: Store) -> Reconciled:
        """After a crash, make rows and files agree: a file without a row (or of another
        size) is removed, a row without a file is dropped. Run it at start-up, before
        serving. A file younger than store.GRACE is left alone: another process sharing
        the directory may be committing it, its row not yet written."""
        files = dict(store.scan())
        rows = dict(self._db().execute("SELECT digest, size FROM content").fetchall())
        busy = store.in_use() | store.recent(files, time.time())
        stray = [d for d, size in files.items() if rows.get(d) != size and d not in busy]
        missing = [d for d, size in rows.items() if files.get(d) != size and d not in busy]
        self.remove(missing)
        for digest in stray:
            store.remove(digest)
        return Reconciled(len(stray), len(missing))


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE takes the write lock up front, so a busy database waits for
    BUSY_TIMEOUT instead of failing half way; ROLLBACK on any exception. Inside
    `Index.writing()` it is part of that transaction."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

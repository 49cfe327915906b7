"""Opening a cache directory at start: its files, temporary files of a killed process
removed, its index (a damaged one set aside), index and files made to agree."""

import logging
import sqlite3
import time
from pathlib import Path

from .errors import CacheError
from .index import Index
from .store import Store

logger = logging.getLogger(__name__)


def open_cache(directory: str) -> tuple[Store, Index]:
    """Raises CacheError (or sqlite3.Error) naming the path when it cannot be used."""
    store = Store.open(directory)
    store.recover()
    index = open_index(Path(store.root) / "index.db")
    index.reconcile(store)
    return store, index


def open_index(path: Path) -> Index:
    """The index; a damaged one is set aside (`index.db.damaged-TIME`) and a new one begun:
    the files it no longer knows are removed by reconciliation, and the mirror serves on."""
    try:
        index = Index.open(path)
        index.count()  # reads a page: a file that is no database fails here
        return index
    except (CacheError, sqlite3.DatabaseError) as e:
        if not path.exists():
            raise
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        # a warning: mitmdump stops when an error is logged during its start
        logger.warning("regmirror: cache index %s is damaged (%s); set aside as %s", path, e,
                     aside.name)  # fmt: skip
        for suffix in ("", "-wal", "-shm"):
            if (old := Path(f"{path}{suffix}")).exists():
                old.rename(f"{aside}{suffix}")
        return Index.open(path)

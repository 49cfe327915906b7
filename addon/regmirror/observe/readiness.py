"""Readiness, for /_regmirror/readyz: the mirror has started (its configuration loaded, every
addon running) and, when the cache is on, the cache can be written: a small file in its
directory and the index's write lock. `/_regmirror/healthz` stays liveness only.

`probe_cache` blocks (a file write, an SQLite lock taken and given back at once): run it in
a thread. The bodies never name a path or a secret: readyz is open to probes."""

import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

INDEX_WAIT = 0.5  # seconds the probe waits for another writer's lock on the index


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


def probe_cache(tmp_dir: Path, index_path: Path) -> Check:
    """Whether a file can be written in the cache's `tmp_dir` (where fills are written) and
    the index's write lock taken. A probe file left by a killed process is removed at the
    next start with the other temporary files."""
    try:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=".ready-")
        try:
            os.write(fd, b"ready")
        finally:
            os.close(fd)
            Path(name).unlink(missing_ok=True)
    except OSError as e:
        return Check("cache", False, f"the cache directory cannot be written: {e.strerror or e}")
    try:
        uri = Path(index_path).resolve().as_uri() + "?mode=rw"  # never creates one
        db = sqlite3.connect(uri, uri=True, timeout=INDEX_WAIT, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as e:
        return Check("cache", False, f"the cache index cannot be written: {e}")
    return Check("cache", True, "writable")


def verdict(checks: Sequence[Check]) -> tuple[int, dict[str, object]]:
    """200 when every check passed, else 503; the JSON body says which failed and why."""
    ready = all(c.ok for c in checks)
    body = {"ready": ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}
    return (200 if ready else 503), body

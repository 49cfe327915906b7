"""A cached file is served only as it was verified. A fill is verified before it is kept;
a file this process has not verified itself (it was there at start), or that changed since
(its size, mtime or inode differ), is hashed again before it is served, in a thread. A file
that no longer matches its digest is dropped and the request goes upstream. What no stat
can see (bit rot under an unchanged mtime) is the `verify` command's job."""

import asyncio
import hashlib
import os
from pathlib import Path

READ = 1 << 20


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def matches(path: Path, digest: str) -> bool:
    """Whether the file's bytes hash to `digest` (blocking: run it in a thread)."""
    algorithm, _, expected = digest.partition(":")
    h = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ):
                h.update(chunk)
    except OSError:
        return False
    return h.hexdigest() == expected


class Verified:
    def __init__(self) -> None:
        self.stamps: dict[str, tuple[int, int, int]] = {}  # digest -> (size, mtime, inode)

    def mark(self, digest: str, path: Path) -> None:
        """`path` was just verified (a committed fill)."""
        if stamp := _stamp(path):
            self.stamps[digest] = stamp

    def forget(self, digest: str) -> None:
        self.stamps.pop(digest, None)

    async def check(self, digest: str, path: Path, size: int) -> bool:
        """Whether `path` may be served as `digest` of `size` bytes."""
        stamp = _stamp(path)
        if stamp is None or stamp[0] != size:
            return False
        if self.stamps.get(digest) == stamp:
            return True
        if not await asyncio.to_thread(matches, path, digest):
            return False
        self.stamps[digest] = stamp
        return True

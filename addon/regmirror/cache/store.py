"""Content-addressed files: `<root>/blobs/<algorithm>/<first 2 hex>/<hex>`, one namespace
for blobs and manifests (both are content by digest); fills are written in `<root>/tmp/`.

A file at its final path is always complete and verified (see fill.py). Only digests that
match `DIGEST` ever become paths, so no request can name a file outside the tree.
Everything here is synchronous and cheap (a stat, an unlink, a directory walk) except
`follow()`; `recover()` and `scan()` walk directories and belong in a thread at start-up.
"""

import asyncio
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .errors import CacheError, DiskError, FillFailed
from .fill import Fill, durable

HEX_LENGTHS = {"sha256": 64, "sha512": 128}
DIGEST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
FOLLOW_CHUNK = 512 << 10
# Seconds within which another process sharing the directory may still be between two
# steps of a commit (its file renamed, its row not yet written: that waits up to the
# index's 5 s busy timeout): files this young are never taken for leftovers.
GRACE = 60.0


def cacheable(digest: str) -> bool:
    """A digest this store can hold and verify: sha256 or sha512, lowercase hex of the right
    length (the OCI image spec's form); anything else is passed through uncached."""
    return DIGEST.fullmatch(digest) is not None


class Store:
    """The files of one cache directory. Fills in progress and files being read are tracked
    in this process (`in_use()`), so eviction can leave them alone."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self._fills: dict[str, Fill] = {}
        self._readers: Counter[str] = Counter()

    @classmethod
    def open(cls, root: Path | str, *args: Any) -> Self:
        """Create the directories and probe that a file can be written in tmp/ and renamed
        into blobs/ (same file system). Raises CacheError naming the path otherwise. `args`
        go to the constructor of a subclass."""
        store = cls(Path(root).expanduser(), *args)
        try:
            for algorithm in HEX_LENGTHS:
                (store.blobs / algorithm).mkdir(parents=True, exist_ok=True)
            store.tmp.mkdir(exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=store.tmp, prefix=".probe-")
            try:  # locked, as a fill's file: another process's recover() leaves it alone
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, b"probe")
                moved = store.blobs / os.path.basename(probe)
                os.replace(probe, moved)
                moved.unlink()
            finally:
                os.close(fd)
        except OSError as e:
            raise CacheError(
                f"cache directory {store.root} cannot be created or written: "
                f"{e.strerror or e} ({e.filename or store.root})"
            ) from e
        return store

    def recover(self) -> list[Path]:
        """Remove what killed processes left in tmp/ and return it. A temporary file whose
        writer is alive holds an flock (released by the kernel when the process dies, even by
        SIGKILL), so it is left alone: recovery is safe while another process fills."""
        # open() killed between two lines; one of another process that is starting now
        # lives a few milliseconds
        removed = [p for p in self.blobs.glob(".probe-*") if _older(p, time.time() - GRACE)]
        for path in removed:
            path.unlink(missing_ok=True)
        for entry in os.scandir(self.tmp):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                finally:
                    os.close(fd)
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def path(self, digest: str) -> Path:
        m = DIGEST.fullmatch(digest)
        if m is None:
            raise ValueError(f"not a cacheable digest: {digest!r}")
        algorithm, hex_ = (m[1], m[2]) if m[1] else (m[3], m[4])
        return self.blobs / algorithm / hex_[:2] / hex_

    def size(self, digest: str) -> int | None:
        """The committed file's size, or None if there is none."""
        if not cacheable(digest):
            return None
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, digest: str) -> bool:
        return self.size(digest) is not None

    def remove(self, digest: str) -> bool:
        """Unlink the committed file (not fsynced: a file that comes back after a crash has
        no index row, and reconciliation removes it). Readers that have it open keep reading
        it to the end. Returns whether there was a file."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def scan(self) -> Iterator[tuple[str, int]]:
        """(digest, size) of every committed file. Names that are not digests in their right
        directory are skipped, never removed."""
        for algorithm in HEX_LENGTHS:
            for sub in os.scandir(self.blobs / algorithm):
                if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(sub.path):
                    digest = f"{algorithm}:{entry.name}"
                    if (
                        entry.name.startswith(sub.name)
                        and cacheable(digest)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        yield digest, entry.stat(follow_symlinks=False).st_size

    def recent(self, digests: Iterable[str], now: float) -> set[str]:
        """Those of `digests` whose file was written less than GRACE seconds ago."""
        return {d for d in digests if not _older(self.path(d), now - GRACE)}

    def fill(self, digest: str, expected_size: int | None = None) -> Fill | None:
        """Start filling `digest`; None if it is not cacheable. One fill per digest at a
        time: look for `filling(digest)` first (RuntimeError otherwise). When the temporary
        file cannot be created the fill starts failed with a DiskError, so the caller's path
        is the same: stream on, and `commit()` raises."""
        if not cacheable(digest):
            return None
        if digest in self._fills:
            raise RuntimeError(f"{digest} is already being filled")
        final = self.path(digest)
        tmp = self.tmp / f"{final.name[:16]}.failed"
        fd: int | None = None
        failure = None
        try:
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"{final.name[:16]}.")
            tmp = Path(name)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if fd is not None:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                fd = None
            failure = DiskError(e.strerror or str(e))
        fill = Fill(digest, expected_size, tmp, final, fd, self._ended, self._persist, failure)
        if failure is None:
            self._fills[digest] = fill
        return fill

    async def _persist(self, fill: Fill, fd: int) -> Callable[[], None] | None:
        created = await asyncio.to_thread(durable, fd, fill.tmp_path, fill.final_path)
        final = fill.final_path
        return (lambda: final.unlink(missing_ok=True)) if created else None

    def filling(self, digest: str) -> Fill | None:
        """The fill in progress for `digest` (single flight), until it has committed or
        failed."""
        return self._fills.get(digest)

    def _ended(self, fill: Fill) -> None:
        if self._fills.get(fill.digest) is fill:
            del self._fills[fill.digest]

    @contextmanager
    def reading(self, digest: str) -> Iterator[None]:
        """Mark `digest` as being served for the duration, so eviction skips it."""
        self._readers[digest] += 1
        try:
            yield
        finally:
            self._readers[digest] -= 1
            if not self._readers[digest]:
                del self._readers[digest]
                self._unread(digest)

    def _unread(self, digest: str) -> None:
        """Nobody reads `digest` any more (a store that keeps files for readers lets go)."""

    async def _open_following(self, fill: Fill) -> int:
        """The file of a fill, opened for reading: the temporary file, or once committed
        the final one."""
        while fill.committing:  # its thread may be renaming the file right now
            await fill.wait()
        if fill.failure is not None:
            raise _again(fill.failure)
        try:
            return os.open(fill.final_path if fill.committed else fill.tmp_path, os.O_RDONLY)
        except OSError as e:
            raise DiskError(e.strerror or str(e)) from e

    def in_use(self) -> set[str]:
        """Digests being filled or read in this process: never evict these."""
        return set(self._fills) | set(self._readers)

    async def follow(
        self, fill: Fill, start: int = 0, chunk: int = FOLLOW_CHUNK
    ) -> AsyncIterator[bytes]:
        """Yield the fill's bytes from `start` as they are written, and return once the fill
        is verified and all is sent. Raises FillFailed when the fill fails: the consumer then
        aborts its client's connection. The last byte of a body of known size is yielded only
        after verification (`Fill.readable`). Reads (pread of bytes just written, so from
        the page cache) run on the event loop. Use it with contextlib.aclosing."""
        with self.reading(fill.digest):
            fd = await self._open_following(fill)
            try:
                pos = start
                while True:
                    if fill.failure is not None:
                        raise _again(fill.failure)
                    end = fill.readable
                    if pos < end:
                        data = os.pread(fd, min(chunk, end - pos), pos)
                        if not data:
                            raise DiskError(f"{fill.digest}: file shorter than written")
                        pos += len(data)
                        yield data
                    elif fill.verified:
                        return
                    else:
                        await fill.wait()
            except OSError as e:
                raise DiskError(e.strerror or str(e)) from e
            finally:
                os.close(fd)


def _older(path: Path, than: float) -> bool:
    """The file was last written before `than` (False if it is gone)."""
    try:
        return path.stat().st_mtime < than
    except FileNotFoundError:
        return False


def _again(failure: FillFailed) -> FillFailed:
    """A fresh exception per follower: one instance raised in many tasks would collect all
    their tracebacks."""
    return type(failure)(failure.detail)

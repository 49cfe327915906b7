"""One content-addressed file being filled from a streamed body, and what its readers see.

Life of a fill: `write()` per chunk (hash update and file write, on the event loop: the page
cache takes it) -> `verify()` (size and digest, synchronous and cheap) -> `await commit()`
(fsync, rename, directory fsync, in a thread). Any failure removes the temporary file, and
nothing of a failed fill is ever at its final path.
"""

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

from .errors import Aborted, DigestMismatch, DiskError, FillFailed, LongBody, ShortBody


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable(fd: int, tmp: Path, final: Path) -> bool:
    """Runs in a thread: the bytes reach the disk before the name does, so a crash leaves
    either the temporary file (removed at start) or the whole committed file. A file already
    at `final` (fetched before through another repository) is replaced by these verified
    bytes, since nothing vouches for it (it may have rotted on disk); readers that have it
    open keep reading the old one. Returns whether the file is new at `final`."""
    created = False
    try:
        try:  # renamed while still open, so locked: another process's recover() skips it
            os.fsync(fd)
            existed = final.exists()
            if not existed and not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                fsync_dir(final.parent.parent)
            os.replace(tmp, final)
            created = not existed
        finally:
            os.close(fd)
        fsync_dir(final.parent)
    except Exception as e:
        with suppress(OSError):
            os.unlink(final if created else tmp)
        raise DiskError(getattr(e, "strerror", None) or str(e)) from e
    return created


# How a store makes a verified fill durable, given the fill and its open file: it returns
# what undoes that if the fill's record then fails (None: nothing to undo).
Persist = Callable[["Fill", int], Awaitable[Callable[[], None] | None]]


class Fill:
    """A body on its way to `final_path`, written to `tmp_path` (open as `fd`; None when the
    temporary file could not even be created, then `failure` is already a DiskError).

    Invariants at every await point: while `failure` is None the temporary file holds exactly
    `written` bytes; `verified` means it holds the whole body and the digest matched.
    """

    def __init__(
        self,
        digest: str,
        expected_size: int | None,
        tmp_path: Path,
        final_path: Path,
        fd: int | None,
        on_end: Callable[["Fill"], None],
        persist: Persist,
        failure: FillFailed | None = None,
    ) -> None:
        algorithm, _, self._hex = digest.partition(":")
        self.digest = digest
        self.expected_size = expected_size
        self.tmp_path = tmp_path
        self.final_path = final_path
        self.written = 0
        self.failure = failure
        self.verified = False
        self.committed = False
        self._committing = False
        self._fd = fd
        self._hash = hashlib.new(algorithm)
        self._wake: asyncio.Future[None] | None = None
        self._on_end = on_end
        self._persist = persist

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def reason(self) -> str | None:
        return self.failure.reason if self.failure else None

    @property
    def ended(self) -> bool:
        """Committed or failed: nothing about this fill changes any more."""
        return self.committed or self.failure is not None

    @property
    def committing(self) -> bool:
        """The commit's thread is running: the file may be renamed at any moment."""
        return self._committing and not self.ended

    @property
    def readable(self) -> int:
        """How far a follower may send now: everything once verified; before that, all but
        the last byte of a body of known size, so that no client ends a complete-looking body
        before its digest is checked."""
        if self.verified or self.expected_size is None:
            return self.written
        return min(self.written, self.expected_size - 1)

    def write(self, chunk: bytes) -> None:
        """Hash the chunk and append it to the file. Never raises on a disk error: the fill is
        marked failed ("disk error"), later chunks are only hashed, and the caller keeps
        streaming to its client."""
        if self.verified or self._committing:
            raise RuntimeError(f"write after the end of the fill of {self.digest}")
        self._hash.update(chunk)
        self.written += len(chunk)
        if self._fd is not None:
            try:
                done = os.write(self._fd, chunk)
                if done < len(chunk):
                    view = memoryview(chunk)
                    while done < len(view):
                        done += os.write(self._fd, view[done:])
            except OSError as e:
                self._fail(DiskError(e.strerror or str(e)))
            if self.expected_size is not None and self.written > self.expected_size:
                self._fail(LongBody(f"more than {self.expected_size} bytes"))
        if self._wake is not None:
            self._notify()

    def verify(self) -> None:
        """At the end of the body: raise ShortBody, LongBody or DigestMismatch if the bytes
        are not the digest's (or Aborted after `abort()`), else return, even after a disk
        error, which only `commit()` reports. Idempotent."""
        if self.verified:
            return
        if self.failure is not None and not isinstance(self.failure, DiskError):
            raise self.failure
        size = self.expected_size
        if size is not None and self.written != size:
            cls = ShortBody if self.written < size else LongBody
            self._fail(cls(f"{self.written} of {size} bytes"), replace=True)
        elif self._hash.hexdigest() != self._hex:
            self._fail(DigestMismatch(f"body is not {self.digest}"), replace=True)
        if self.failure is not None and not isinstance(self.failure, DiskError):
            raise self.failure
        if self.failure is None:
            self.verified = True
            self._notify()

    async def commit(self, record: Callable[[], Awaitable[object]] | None = None) -> None:
        """Verify, make it durable as its store does (a file: fsync, rename, directory
        fsync, in a thread; S3: the upload completed), then await `record` (the catalog's
        row: so the row exists before the fill stops being in progress, and no request in
        between misses both). Raises FillFailed (what was made undone) when anything fails,
        `record` included. Cancelling the caller does not stop the commit; the fill still
        ends."""
        self.verify()
        if self.failure is not None:
            raise self.failure
        if self.committed:
            return
        if self._committing:
            raise RuntimeError(f"{self.digest} is already being committed")
        self._committing = True
        fd, self._fd = self._fd, None
        assert fd is not None  # no failure: the file is open
        job = asyncio.ensure_future(self._persisted(fd, record))
        job.add_done_callback(self._committed)
        await asyncio.shield(job)

    async def _persisted(self, fd: int, record: Callable[[], Awaitable[object]] | None) -> None:
        undo = await self._persist(self, fd)
        if record is None:
            return
        try:
            await record()
        except Exception as e:
            if undo is not None:
                undo()
            raise DiskError(str(e)) from e

    def abort(self) -> None:
        """Give up: the temporary file is removed and followers get Aborted. No-op once the
        commit has started or the fill has ended."""
        if not (self._committing or self.ended):
            self._fail(Aborted())

    async def wait(self) -> None:
        """Return after the next write, verification or end (at once if ended). Safe to
        cancel: other waiters are not affected."""
        if self.ended:
            return
        if self._wake is None:
            self._wake = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._wake)

    def _committed(self, job: "asyncio.Future[None]") -> None:
        error = Aborted("commit cancelled") if job.cancelled() else job.exception()
        if error is None:
            self.committed = True
            self._notify()
            self._on_end(self)
        else:
            self._fail(error if isinstance(error, FillFailed) else DiskError(str(error)))

    def _fail(self, failure: FillFailed, replace: bool = False) -> None:
        if self.failure is not None and not replace:
            return
        self.failure = failure
        self.verified = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with suppress(OSError):
            os.unlink(self.tmp_path)
        self._notify()
        self._on_end(self)

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

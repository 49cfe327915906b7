"""Fills of an S3 cache: each body is spooled in a local file, which the clients that follow
the fill read as it grows (single flight, as on disk) and from which its upload reads the
bytes it sends up (upload.py). The upload completing is the commit; the file goes once
the fill has ended and nobody reads it any more.

A spool file stays open, and so flocked, until it goes: `Store.recover()` of another
process sharing the spool directory never removes one still in use."""

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DiskError, FillFailed
from ..fill import Fill
from ..store import Store
from .client import S3_ERRORS
from .location import S3Location
from .upload import upload


class SpoolStore(Store):
    def __init__(self, root: Path, client: Any, location: S3Location) -> None:
        super().__init__(root)
        self.client, self.location = client, location
        self._uploads: dict[str, asyncio.Task[None]] = {}
        self._spent: dict[str, list[tuple[int, Path]]] = {}  # committed, still read

    def fill(self, digest: str, expected_size: int | None = None) -> Fill | None:
        fill = super().fill(digest, expected_size)
        if fill is None or fill.failed:
            return fill
        job = upload(self.client, self.location.bucket, self.location.blob(digest),
                     self._bytes(fill), expected_size, "application/octet-stream")  # fmt: skip
        task = asyncio.get_running_loop().create_task(job)
        task.add_done_callback(_retrieved)  # a failed fill's upload fails: nobody waits
        self._uploads[digest] = task
        return fill

    async def _bytes(self, fill: Fill):  # type: ignore[no-untyped-def]
        async with contextlib.aclosing(self.follow(fill)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _persist(self, fill: Fill, fd: int) -> Callable[[], None] | None:
        task = self._uploads.pop(fill.digest)
        try:
            await task
        except (FillFailed, *S3_ERRORS) as e:
            os.close(fd)
            raise DiskError(f"upload to S3 failed: {e}") from e
        self._spent.setdefault(fill.digest, []).append((fd, fill.tmp_path))
        return None  # the object is whole and verified: nothing to undo if its row fails

    async def _open_following(self, fill: Fill) -> int:
        if fill.failure is not None:
            raise FillFailed(fill.failure.detail)
        try:
            return os.open(fill.tmp_path, os.O_RDONLY)  # never renamed: it is there till read
        except OSError as e:
            raise DiskError(e.strerror or str(e)) from e

    def _ended(self, fill: Fill) -> None:
        super()._ended(fill)
        # failed before its commit: the upload sees the failure and aborts by itself
        self._uploads.pop(fill.digest, None)
        if fill.digest not in self._readers:
            self._unread(fill.digest)

    def _unread(self, digest: str) -> None:
        if digest in self._fills or digest not in self._spent:
            return  # still filling: its upload and followers read on
        for fd, path in self._spent.pop(digest):
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def _retrieved(task: "asyncio.Task[None]") -> None:
    if not task.cancelled():
        task.exception()

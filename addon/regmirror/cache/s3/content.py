"""Committed content in the bucket, served to the cache's loopback file server (files.py):
every byte is hashed on its way out and the last one is held back until the digest
matched, as for a fill's followers. An object that is not its digest (changed in the
bucket behind the mirror's back) is cut short, the client's connection aborted, and the
object dropped. A Range request reads the whole object too, to verify it, and sends only
the range: clients send one only to resume a pull.

With regmirror_s3_redirect the storage serves blobs itself, to a presigned URL (presign):
then the mirror vouches only for what it uploaded, verified, and S3 for keeping it."""

import hashlib
import logging
from typing import Any

import aiohttp
from aiohttp import web
from botocore.exceptions import ClientError

from ..content import CORRUPTED, MISSING, OK, UNKNOWN
from ..fill import Fill
from .client import S3_ERRORS, missing
from .location import S3Location

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


class S3Content:
    where = "in the bucket"

    def __init__(self, client: Any, location: S3Location) -> None:
        self.client, self.location = client, location

    async def check(self, digest: str, size: int) -> str:
        """OK when an object of `size` bytes is there; a HEAD (its bytes are verified as
        they are served). An object of another size is dropped."""
        try:
            said = await self.client.head_object(Bucket=self.location.bucket,
                                                 Key=self.location.blob(digest))  # fmt: skip
        except S3_ERRORS as e:
            if not missing(e):
                logger.warning("regmirror: S3 cannot be asked for %s: %s", digest, e)
                return UNKNOWN  # a transient fault must not make the cache forget it
            return MISSING
        if said["ContentLength"] == size:
            return OK
        await self.discard(digest)
        return CORRUPTED

    async def discard(self, digest: str) -> None:
        """The object goes (its links are the catalog's to forget)."""
        try:
            await self.client.delete_object(Bucket=self.location.bucket,
                                             Key=self.location.blob(digest))  # fmt: skip
        except S3_ERRORS as e:
            logger.warning("regmirror: S3: %s could not be removed: %s", digest, e)

    async def usable(self) -> str:
        """ "" when the bucket answers; else why not, naming neither bucket nor endpoint."""
        try:
            await self.client.head_bucket(Bucket=self.location.bucket)
        except S3_ERRORS as e:
            code = e.response.get("Error", {}).get("Code") if isinstance(e, ClientError) else ""
            return f"the cache bucket does not answer ({code or type(e).__name__})"
        return ""

    def committed(self, fill: Fill) -> None:
        """Nothing to remember: every hit is verified as it is served."""

    async def presign(self, digest: str, expires: int) -> str:
        return await self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.location.bucket, "Key": self.location.blob(digest)},
            ExpiresIn=expires,
        )

    async def respond(
        self, request: web.Request, digest: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        ask = self.client.head_object if request.method == "HEAD" else self.client.get_object
        try:
            said = await ask(Bucket=self.location.bucket, Key=self.location.blob(digest))
        except S3_ERRORS as e:
            if missing(e):  # evicted since the lookup's HEAD
                raise web.HTTPNotFound() from e
            logger.warning("regmirror: S3 cannot serve %s: %s", digest, e)
            raise web.HTTPServiceUnavailable() from e  # clients retry a 503, not a 404
        body, size = said.get("Body"), said["ContentLength"]
        try:
            return await self._send(request, digest, headers, body, size)
        finally:
            if body is not None:
                body.close()

    async def _send(
        self, request: web.Request, digest: str, headers: dict[str, str], body: Any, size: int
    ) -> web.StreamResponse:
        try:
            wanted = request.http_range
        except ValueError:
            wanted = slice(None, None)
        first, end = _bounds(wanted, size)
        if first >= end and (wanted.start is not None or wanted.stop is not None):
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        ranged = (first, end) != (0, size)
        response = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        response.content_length = end - first
        if ranged:
            response.headers["Content-Range"] = f"bytes {first}-{end - 1}/{size}"
        response.headers["Accept-Ranges"] = "bytes"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        algorithm, _, expected = digest.partition(":")
        hashed, pos, held = hashlib.new(algorithm), 0, b""
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                hashed.update(chunk)
                lo, hi = max(first - pos, 0), min(end - pos, len(chunk))
                pos += len(chunk)
                if lo < hi:
                    if held:
                        await response.write(held)
                    held = chunk[lo:hi] if (lo, hi) != (0, len(chunk)) else chunk
        except (*S3_ERRORS, aiohttp.ClientError) as e:  # S3 stopped sending
            logger.warning("regmirror: S3 stopped sending %s: %s", digest, e)
            if request.transport:
                request.transport.abort()
            return response
        if pos != size or hashed.hexdigest() != expected:
            logger.warning("regmirror: S3 object %s is not its digest: dropped", digest)
            if request.transport:
                request.transport.abort()  # the client never takes this body for whole
            await self.discard(digest)
            return response
        if held:
            await response.write(held)
        await response.write_eof()
        return response


def _bounds(wanted: slice, size: int) -> tuple[int, int]:
    """[first, end) of a parsed Range (aiohttp's slice: a suffix is a negative start)."""
    start, stop = wanted.start, wanted.stop
    if start is None:
        return 0, size
    if start < 0:
        return max(size + start, 0), size
    return start, min(stop, size) if stop is not None else size

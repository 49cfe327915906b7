"""Uploading content while it streams: the bytes of a fill, as its spool file grows
(Store.follow), go up in parts of PART_SIZE, a few at once; the upload is completed only
when the last byte arrives, which the fill hands out only once the digest has matched.
Until then no object exists under the key (S3 makes a multipart upload visible only when
completed), and any failure aborts it, so no reader ever sees part of an object. Content
smaller than one part is sent with a single PUT at the end.

Two replicas uploading the same digest at once both complete the same verified bytes:
whichever finishes last wins, and the object is whole either way."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .client import S3_ERRORS

PART_SIZE = 8 << 20  # S3's least is 5 MiB for all parts but the last
# Parts sent at once: one connection to S3 moves less than a fill brings in; at most this
# many parts' bytes (32 MiB) wait in memory per fill.
PARTS_IN_FLIGHT = 4


async def upload(
    client: Any,
    bucket: str,
    key: str,
    chunks: AsyncIterator[bytes],
    size: int | None,
    media_type: str,
) -> None:
    """Raises what `chunks` or S3 raise, the upload aborted."""
    meta = {"ContentType": media_type}
    if size is not None and size < PART_SIZE:
        body = b"".join([chunk async for chunk in chunks])
        await client.put_object(Bucket=bucket, Key=key, Body=body, **meta)
        return
    upload_id = (await client.create_multipart_upload(Bucket=bucket, Key=key, **meta))["UploadId"]
    parts: list[asyncio.Task[dict[str, object]]] = []
    room = asyncio.Semaphore(PARTS_IN_FLIGHT)

    async def part(number: int, body: bytes) -> dict[str, object]:
        try:
            said = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        finally:
            room.release()
        return {"PartNumber": number, "ETag": said["ETag"]}

    async def send(body: bytes) -> None:
        await room.acquire()
        parts.append(asyncio.ensure_future(part(len(parts) + 1, body)))

    try:
        pending: list[bytes] = []  # joined once per part: one copy of each byte
        held = 0
        async for chunk in chunks:
            pending.append(chunk)
            held += len(chunk)
            if held >= PART_SIZE:
                await send(b"".join(pending))
                pending, held = [], 0
        if pending or not parts:
            await send(b"".join(pending))
        done = await asyncio.gather(*parts)
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    except BaseException:
        for task in parts:
            task.cancel()
        await asyncio.gather(*parts, return_exceptions=True)
        # an abort that fails too leaves an invisible upload: the bucket's lifecycle rule
        # for incomplete uploads removes it (README)
        with contextlib.suppress(*S3_ERRORS):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise

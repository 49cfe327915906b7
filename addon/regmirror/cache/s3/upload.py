"""Uploading content while it streams: the bytes of a fill, as its spool file grows
(Store.follow), go up in parts of PART_SIZE; the upload is completed only when the last
byte arrives, which the fill hands out only once the digest has matched. Until then no
object exists under the key (S3 makes a multipart upload visible only when completed), and
any failure aborts it, so no reader ever sees part of an object. Content smaller than one
part is sent with a single PUT at the end.

Two replicas uploading the same digest at once both complete the same verified bytes:
whichever finishes last wins, and the object is whole either way."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .client import S3_ERRORS

PART_SIZE = 8 << 20  # S3's least is 5 MiB for all parts but the last


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
    parts: list[dict[str, object]] = []
    try:
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= PART_SIZE:
                await _part(client, bucket, key, upload_id, parts, bytes(buffer))
                buffer.clear()
        if buffer or not parts:
            await _part(client, bucket, key, upload_id, parts, bytes(buffer))
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # an abort that fails too leaves an invisible upload: the bucket's lifecycle rule
        # for incomplete uploads removes it (README)
        with contextlib.suppress(*S3_ERRORS):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


async def _part(
    client: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, object]],
    body: bytes,
) -> None:  # fmt: skip
    number = len(parts) + 1
    said = await client.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
    )
    parts.append({"PartNumber": number, "ETag": said["ETag"]})

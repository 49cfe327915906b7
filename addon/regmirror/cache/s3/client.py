"""The S3 client: aiobotocore (botocore's request signing, retries and the standard AWS
credential chain — environment variables, the shared config and credentials files,
container and instance roles — on aiohttp, so no call blocks the event loop).

An endpoint other than AWS is addressed by path (`endpoint/bucket/key`), which MinIO, Ceph
RGW, R2 and local servers all take; the region is the chain's, else us-east-1."""

import contextlib
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

# What an S3 call raises when the service cannot be used: a refusal (ClientError, with its
# code), or no answer at all (connection, timeout, credentials: BotoCoreError).
S3_ERRORS = (ClientError, BotoCoreError, OSError)
MISSING = {"404", "NoSuchKey", "NotFound"}


def missing(e: Exception) -> bool:
    """A ClientError that says the key (or the object of a HEAD) is not there."""
    return isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in MISSING


async def open_client(stack: contextlib.AsyncExitStack, endpoint: str) -> Any:
    """An S3 client, closed with `stack`."""
    session = get_session()
    config = AioConfig(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        max_pool_connections=64,
        signature_version="s3v4",  # presigned URLs too (botocore presigns S3 with v2 else)
    )
    region = session.get_config_variable("region") or "us-east-1"
    return await stack.enter_async_context(
        session.create_client(
            "s3", endpoint_url=endpoint or None, region_name=region, config=config
        )  # fmt: skip
    )

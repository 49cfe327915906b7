"""Which replica evicts: the one holding the lease object, `{"holder", "expires"}`, taken
with a conditional write (If-None-Match for a new lease, If-Match of the ETag read for an
expired one), so two replicas never both win it. A replica that dies holding it only
delays eviction until it expires."""

import contextlib
import json
from typing import Any

from .client import S3_ERRORS, missing
from .location import S3Location

LEASE_SECONDS = 300.0  # longer than an eviction takes; a dead holder's lease lapses after


def takeable(held: dict[str, Any] | None, now: float, me: str) -> bool:
    """Whether `me` may take the lease as it stands (None: nobody holds one)."""
    if held is None:
        return True
    try:
        return held["holder"] == me or float(held["expires"]) <= now
    except (KeyError, TypeError, ValueError):
        return True  # not a lease we wrote: take it over


class Lease:
    def __init__(self, client: Any, location: S3Location, me: str) -> None:
        self.client, self.location, self.me = client, location, me

    async def acquire(self, now: float) -> bool:
        """True when this replica now holds the lease until now + LEASE_SECONDS."""
        bucket, key = self.location.bucket, self.location.lease
        try:
            said = await self.client.get_object(Bucket=bucket, Key=key)
            async with said["Body"] as body:
                text = await body.read()
            etag = said["ETag"]
        except S3_ERRORS as e:
            if not missing(e):
                return False
            text, etag = b"", None
        held = None
        if etag:
            try:
                held = json.loads(text)
            except ValueError:
                held = {}
            if not isinstance(held, dict):
                held = {}  # not a lease we wrote: taken over
        if not takeable(held, now, self.me):
            return False
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        lease = json.dumps({"holder": self.me, "expires": now + LEASE_SECONDS}).encode()
        try:
            await self.client.put_object(Bucket=bucket, Key=key, Body=lease, **condition)
        except S3_ERRORS:  # another replica won it (412), or S3 cannot be reached
            return False
        return True

    async def release(self) -> None:
        """Let the next replica evict at once (best effort: else the lease lapses)."""
        with contextlib.suppress(*S3_ERRORS):
            await self.client.delete_object(Bucket=self.location.bucket, Key=self.location.lease)

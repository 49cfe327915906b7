"""What the cache raises. A FillFailed's `reason` is the label for logs and metrics."""


class CacheError(Exception):
    """The cache directory or its index cannot be used; the message names the path."""


class FillFailed(Exception):
    """A fill that is not committed. The bytes seen so far must never reach a client as a
    complete body: a consumer that gets this aborts its client's connection."""

    reason = "fill failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class DigestMismatch(FillFailed):
    reason = "digest mismatch"


class ShortBody(FillFailed):
    reason = "short body"


class LongBody(FillFailed):
    reason = "long body"


class DiskError(FillFailed):
    """Writing, syncing or renaming failed (ENOSPC, EIO, ...). The body itself may be fine:
    the fill kept hashing, so `Fill.verify()` still tells whether the client got the right
    bytes."""

    reason = "disk error"


class Aborted(FillFailed):
    """The fill's owner gave up (its upstream or its client went away)."""

    reason = "aborted"


class CatalogError(CacheError):
    """The catalog (links, tags, content rows) cannot be read or written just now: a locked
    or damaged index, an unreachable bucket. The request is answered from upstream."""

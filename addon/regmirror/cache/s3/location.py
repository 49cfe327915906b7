"""Where everything lives in the bucket, under the prefix of `s3://bucket/prefix`:

    blobs/<algorithm>/<hex>                       content (blob or manifest), by digest
    links/<algorithm>:<hex>/<registry>/<repo>     who may see it: {"provenance": ...}
    tags/<registry>/<repo>/<tag>                  {"digest", "media_type", "validated"}
    access/<ms since epoch>-<replica>.json        a batch of access times
    lease/evict                                   which replica evicts, until when

Links are keyed by digest first, so everything that points at content is one listing
away when the content goes. A repository's components never contain "@" or ":", and a
registry never "/", so no key of one kind reads as another's."""

import re
from typing import NamedTuple

from ..store import DIGEST

# S3's rules for a bucket name (virtual-host safe): 3-63 of a-z, 0-9, "." and "-"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3Location(NamedTuple):
    bucket: str
    prefix: str  # "" or ending in "/"

    def blob(self, digest: str) -> str:
        algorithm, _, hex_ = digest.partition(":")
        return f"{self.prefix}blobs/{algorithm}/{hex_}"

    def digest_of(self, key: str) -> str | None:
        """The digest of a blob key; None for any other key."""
        rest = key.removeprefix(self.prefix + "blobs/")
        algorithm, _, hex_ = rest.partition("/")
        digest = f"{algorithm}:{hex_}"
        return digest if rest != key and DIGEST.fullmatch(digest) else None

    def links(self, digest: str) -> str:
        return f"{self.prefix}links/{digest}/"

    def link(self, registry: str, repository: str, digest: str) -> str:
        return f"{self.links(digest)}{registry}/{repository}"

    def tag(self, registry: str, repository: str, tag: str) -> str:
        return f"{self.prefix}tags/{registry}/{repository}/{tag}"

    @property
    def access(self) -> str:
        return f"{self.prefix}access/"

    def access_batch(self, now: float, replica: str) -> str:
        return f"{self.access}{int(now * 1000):013d}-{replica}.json"

    @property
    def lease(self) -> str:
        return f"{self.prefix}lease/evict"


def parse(url: str) -> S3Location:
    """`s3://bucket` or `s3://bucket/prefix`. Raises ValueError saying what is wrong."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{bucket!r} is not an S3 bucket name (3 to 63 characters: a-z, 0-9, '.', '-')"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"the prefix {prefix!r} has an empty, '.' or '..' component")
    return S3Location(bucket, prefix + "/" if prefix else "")

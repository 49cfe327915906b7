"""Where a test's mirror keeps its cache, so that one test runs against each backend: a
directory, or a bucket of the S3 stand-in (s3server.py). Each says what the mirror stored
and lets a test damage it behind the mirror's back."""

from __future__ import annotations

from pathlib import Path

from .s3server import S3Server


class DiskCache:
    name = "disk"

    def __init__(self, root: Path) -> None:
        self.root = root

    def options(self) -> dict[str, str]:
        return {"regmirror_cache": str(self.root)}

    def path(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.root / "blobs" / "sha256" / hex_[:2] / hex_

    def stored(self, digest: str) -> bytes | None:
        """The bytes held for `digest`, None if there are none."""
        path = self.path(digest)
        return path.read_bytes() if path.is_file() else None

    def replace(self, digest: str, data: bytes) -> None:
        self.path(digest).write_bytes(data)

    def leftovers(self) -> list[str]:
        """What a fill left that is not committed content."""
        tmp = self.root / "tmp"
        return [p.name for p in tmp.iterdir()] if tmp.is_dir() else []


class BucketCache:
    name = "s3"
    prefix = "mirror-cache"

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.bucket()

    def options(self) -> dict[str, str]:
        return {
            "regmirror_cache": f"s3://{self.bucket}/{self.prefix}",
            "regmirror_s3_endpoint": self.server.url,
        }

    def key(self, digest: str) -> str:
        algorithm, _, hex_ = digest.partition(":")
        return f"{self.prefix}/blobs/{algorithm}/{hex_}"

    def stored(self, digest: str) -> bytes | None:
        """The bytes of `digest` once it is committed: its object, linked."""
        if not self.server.keys(self.bucket, f"{self.prefix}/links/{digest}/"):
            return None
        client = self.server.client()
        try:
            return client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def replace(self, digest: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.bucket, Key=self.key(digest), Body=data)

    def leftovers(self) -> list[str]:
        """Multipart uploads neither completed nor aborted, and objects no link leads to."""
        unlinked = []
        for key in self.server.keys(self.bucket, f"{self.prefix}/blobs/"):
            algorithm, hex_ = key.rsplit("/", 2)[1:]
            if not self.server.keys(self.bucket, f"{self.prefix}/links/{algorithm}:{hex_}/"):
                unlinked.append(key)
        return self.server.uploads(self.bucket) + unlinked


CacheBackend = DiskCache | BucketCache

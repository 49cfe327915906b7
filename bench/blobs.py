"""Incompressible blobs and images pushed to the upstream over the registry API.

Blobs are generated from a seed while they upload (never held whole in memory or on disk),
so the same seed always gives the same digest.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.support.images import OCI_CONFIG, OCI_MANIFEST, random_bytes

CHUNK = 8 << 20
# Raw random bytes stand in for a layer: skopeo copies to dir: without unpacking.
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str = LAYER_MEDIA_TYPE

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    repo: str
    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]


def chunks(size: int, seed: int) -> Iterator[bytes]:
    """`size` seeded random bytes, in pieces of at most CHUNK."""
    for i, start in enumerate(range(0, size, CHUNK)):
        yield random_bytes(min(CHUNK, size - start), seed * 1_000_003 + i)


def blob_digest(size: int, seed: int) -> str:
    h = hashlib.sha256()
    for piece in chunks(size, seed):
        h.update(piece)
    return "sha256:" + h.hexdigest()


class Pusher:
    """Uploads to one upstream with a push token (a client with base_url and Authorization)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob(self, repo: str, size: int, seed: int) -> Blob:
        """Stream a generated blob up (POST, one PATCH, PUT ?digest=)."""
        h = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for piece in chunks(size, seed):
                h.update(piece)
                yield piece

        start = self.client.post(f"/v2/{repo}/blobs/uploads/")
        start.raise_for_status()
        patch = self.client.patch(
            start.headers["Location"],
            content=body(),
            headers={"Content-Type": "application/octet-stream"},
        )
        patch.raise_for_status()
        digest = "sha256:" + h.hexdigest()
        done = self.client.put(_with_digest(patch.headers["Location"], digest))
        done.raise_for_status()
        return Blob(digest, size)

    def bytes_blob(self, repo: str, data: bytes, media_type: str) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = self.client.post(f"/v2/{repo}/blobs/uploads/")
        start.raise_for_status()
        done = self.client.put(
            _with_digest(start.headers["Location"], digest),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()
        return Blob(digest, len(data), media_type)

    def image(self, repo: str, tag: str, layers: list[Blob]) -> Image:
        """An OCI image of `layers` (already pushed) under repo:tag."""
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        }
        config_blob = self.bytes_blob(repo, _canonical(config), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in layers],
        }
        data = _canonical(manifest)
        put = self.client.put(
            f"/v2/{repo}/manifests/{tag}", content=data, headers={"Content-Type": OCI_MANIFEST}
        )
        put.raise_for_status()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        manifest_blob = Blob(digest, len(data), OCI_MANIFEST)
        return Image(repo, tag, manifest_blob, config_blob, tuple(layers))


def _with_digest(location: str, digest: str) -> str:
    """The upload URL with `digest=` added to its own query (which carries upload state)."""
    return f"{location}{'&' if '?' in location else '?'}digest={urllib.parse.quote(digest)}"


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

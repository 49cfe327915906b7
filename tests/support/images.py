"""Deterministic OCI image layouts built by hand, and pushing them with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clients import Skopeo

if TYPE_CHECKING:
    from .registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Files = Mapping[str, bytes]  # path inside the layer -> content


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Layer(Blob):
    diff_id: str  # sha256 of the uncompressed tar


@dataclass(frozen=True)
class PlatformImage:
    platform: str  # "linux/amd64"
    manifest: Blob
    config: Blob
    layers: tuple[Layer, ...]

    @property
    def digests(self) -> list[str]:
        """Manifest, config and layer digests."""
        return [self.manifest.digest, self.config.digest, *(layer.digest for layer in self.layers)]


@dataclass
class BuiltImage:
    """An OCI layout on disk. `index` is set for multi-platform images (the image index)."""

    layout_dir: Path
    tag: str
    platforms: dict[str, PlatformImage]
    index: Blob | None = None
    repo: str | None = None  # set by push()
    pushed_to: list[str] = field(default_factory=list)  # docker:// references pushed

    @property
    def digest(self) -> str:
        """What the tag resolves to: the index digest, else the single manifest digest."""
        if self.index is not None:
            return self.index.digest
        return self.single.manifest.digest

    @property
    def media_type(self) -> str:
        return self.index.media_type if self.index else self.single.manifest.media_type

    @property
    def single(self) -> PlatformImage:
        if len(self.platforms) != 1:
            raise ValueError("image has several platforms")
        return next(iter(self.platforms.values()))

    @property
    def manifest_digest(self) -> str:
        """Manifest digest for linux/amd64 (or the only platform)."""
        if "linux/amd64" in self.platforms:
            return self.platforms["linux/amd64"].manifest.digest
        return self.single.manifest.digest

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Layers of linux/amd64 (or the only platform)."""
        if "linux/amd64" in self.platforms:
            return self.platforms["linux/amd64"].layers
        return self.single.layers

    def blob_digests(self) -> set[str]:
        """Every manifest, index, config and layer digest of this image."""
        out = {d for p in self.platforms.values() for d in p.digests}
        if self.index is not None:
            out.add(self.index.digest)
        return out

    def read_blob(self, digest: str) -> bytes:
        return (self.layout_dir / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(size: int, seed: int) -> bytes:
    """Incompressible but reproducible bytes."""
    return random.Random(seed).randbytes(size)


def make_tar(files: Files) -> bytes:
    """A reproducible tar: sorted entries, parent dirs, mtime 0, root-owned."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d, None) for d in dirs] + [(p.strip("/"), c) for p, c in files.items()])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0, compresslevel=level) as gz:
        gz.write(data)
    return buf.getvalue()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(self, data: bytes, media_type: str) -> Blob:
        digest = sha256_digest(data)
        (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return Blob(digest, len(data), media_type)

    def write_index(self, top: Blob, tag: str, platform: dict[str, str] | None = None) -> None:
        desc: dict[str, Any] = _descriptor(top)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        if platform:
            desc["platform"] = platform
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
        (self.root / "index.json").write_bytes(_canonical(index))


def _descriptor(blob: Blob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}


def _platform_dict(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def _write_platform_image(
    layout: _Layout, platform: str, layers: Sequence[Files], gzip_level: int
) -> PlatformImage:
    built: list[Layer] = []
    for files in layers:
        tar = make_tar(files)
        blob = layout.put(gzip_bytes(tar, gzip_level), OCI_LAYER_GZIP)
        built.append(Layer(blob.digest, blob.size, blob.media_type, sha256_digest(tar)))
    plat = _platform_dict(platform)
    config = {
        **{k: v for k, v in plat.items()},
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/hello"], "Env": ["PATH=/"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"regmirror test layer {i}"}
            for i in range(len(built))
        ],
    }
    config_blob = layout.put(_canonical(config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config_blob),
        "layers": [_descriptor(layer) for layer in built],
    }
    manifest_blob = layout.put(_canonical(manifest), OCI_MANIFEST)
    return PlatformImage(platform, manifest_blob, config_blob, tuple(built))


def build_image(
    layout_dir: Path,
    layers: Sequence[Files],
    tag: str = "1",
    platform: str = "linux/amd64",
    gzip_level: int = 6,
) -> BuiltImage:
    """A single-platform image: one OCI manifest, referenced directly from index.json."""
    layout = _Layout(layout_dir)
    image = _write_platform_image(layout, platform, layers, gzip_level)
    layout.write_index(image.manifest, tag)
    return BuiltImage(layout_dir, tag, {platform: image})


def build_multiarch(
    layout_dir: Path,
    per_platform: Mapping[str, Sequence[Files]],
    tag: str = "1",
    gzip_level: int = 6,
) -> BuiltImage:
    """A multi-platform image: an OCI image index (a blob) referenced from index.json."""
    layout = _Layout(layout_dir)
    images = {
        plat: _write_platform_image(layout, plat, layers, gzip_level)
        for plat, layers in per_platform.items()
    }
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**_descriptor(img.manifest), "platform": _platform_dict(plat)}
            for plat, img in images.items()
        ],
    }
    index_blob = layout.put(_canonical(index), OCI_INDEX)
    layout.write_index(index_blob, tag)
    return BuiltImage(layout_dir, tag, images, index=index_blob)


def hello_layers(name: str, extra: bytes = b"") -> list[Files]:
    """Two small layers with real files (/hello.txt, /etc/NAME.conf)."""
    return [
        {"hello.txt": f"hello from {name}\n".encode()},
        {f"etc/{name}.conf": f"name={name}\n".encode() + extra},
    ]


def build_two_platform(layout_dir: Path, name: str, tag: str = "1") -> BuiltImage:
    """linux/amd64 + linux/arm64 images whose layers differ."""
    return build_multiarch(
        layout_dir,
        {
            "linux/amd64": [
                {"hello.txt": f"hello from {name} on amd64\n".encode()},
                {"arch.txt": b"amd64\n"},
            ],
            "linux/arm64": [
                {"hello.txt": f"hello from {name} on arm64\n".encode()},
                {"arch.txt": b"arm64\n"},
            ],
        },
        tag,
    )


STANDARD_TAG = "1"
BIG_LAYER_SIZE = 8 * 1024 * 1024
BIG_LAYER_SEED = 1234


def build_standard_images(root: Path) -> dict[str, BuiltImage]:
    """The session's test images, keyed by repository name (all tagged "1").

    - library/testimg: linux/amd64, 2 small layers (/hello.txt, /etc/testimg.conf)
    - library/multi:   OCI index, linux/amd64 + linux/arm64 with different layers
    - private/secret:  linux/amd64, 2 small layers (pull needs authentication)
    - org/app:         linux/amd64, 2 small layers (two-component name)
    - library/big:     linux/amd64, 1 layer holding 8 MiB of seeded random bytes
    """
    return {
        "library/testimg": build_image(root / "testimg", hello_layers("testimg")),
        "library/multi": build_two_platform(root / "multi", "multi"),
        "private/secret": build_image(root / "secret", hello_layers("secret")),
        "org/app": build_image(root / "app", hello_layers("app")),
        "library/big": build_image(
            root / "big",
            [{"big.bin": random_bytes(BIG_LAYER_SIZE, BIG_LAYER_SEED)}],
            gzip_level=1,
        ),
    }


def push_all(
    registry: Registry, images: Mapping[str, BuiltImage], work_dir: Path, creds: str | None
) -> None:
    """Push every image to REGISTRY/REPO:TAG (repo = the mapping's key)."""
    for repo, image in images.items():
        push(image, f"{registry.host}/{repo}:{image.tag}", work_dir, creds=creds)


def push(
    image: BuiltImage,
    dest_ref: str,
    work_dir: Path,
    creds: str | None = None,
) -> BuiltImage:
    """skopeo copy --all --preserve-digests oci:DIR:TAG docker://DEST over plain HTTP.

    dest_ref is "127.0.0.1:PORT/name:tag"; creds "user:password"; work_dir holds skopeo's
    isolated environment (see clients.Skopeo).
    """
    skopeo = Skopeo(work_dir)
    dest = dest_ref.removeprefix("docker://")
    skopeo.copy(
        f"oci:{image.layout_dir}:{image.tag}", f"docker://{dest}", all=True, dest_creds=creds
    )
    image.repo = dest.split("/", 1)[1].rsplit(":", 1)[0]
    image.pushed_to.append(dest)
    return image

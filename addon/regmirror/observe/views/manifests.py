"""Image manifests and indexes: Docker v2 manifest and manifest list, OCI manifest and index.

https://github.com/opencontainers/image-spec/blob/main/manifest.md
https://github.com/opencontainers/image-spec/blob/main/image-index.md
"""

from typing import Any

from mitmproxy import contentviews, http

from ..describe import human_size
from .render import Line, blank, heading, pairs, parse_json_object, table, value

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

KINDS = {
    DOCKER_MANIFEST: "Docker image manifest",
    DOCKER_LIST: "Docker manifest list",
    OCI_MANIFEST: "OCI image manifest",
    OCI_INDEX: "OCI image index",
}


def descriptor(d: dict[str, Any]) -> str:
    """`sha256:... 1.2 kB application/...` for a content descriptor."""
    return f"{d.get('digest', '?')}  {human_size(int(d.get('size', 0)))}  {d.get('mediaType', '')}"


def platform(p: dict[str, Any] | None) -> str:
    """`linux/arm64/v8`, `windows/amd64 10.0.17763.1` or `-`."""
    if not p:
        return "-"
    parts = [p.get("os", "?"), p.get("architecture", "?")]
    if p.get("variant"):
        parts.append(p["variant"])
    text = "/".join(parts)
    return f"{text} {p['os.version']}" if p.get("os.version") else text


def _header(doc: dict[str, Any], media_type: str, digest: str) -> list[tuple[str, str]]:
    items = [("digest", digest)] if digest else []
    items.append(("media type", media_type))
    if doc.get("artifactType"):
        items.append(("artifact type", doc["artifactType"]))
    if isinstance(doc.get("config"), dict):
        items.append(("config", descriptor(doc["config"])))
    if isinstance(doc.get("subject"), dict):
        items.append(("subject", descriptor(doc["subject"])))
    return items


def _annotations(title: str, annotations: Any) -> list[Line]:
    if not isinstance(annotations, dict) or not annotations:
        return []
    return [blank(), heading(title), *pairs(((k, value(v)) for k, v in annotations.items()), 2)]


def _entry_annotations(title: str, entries: list[dict[str, Any]]) -> list[Line]:
    """Annotations of layers or index entries, keyed by their row number."""
    items = [
        (f"#{n} {k}", value(v))
        for n, d in enumerate(entries, 1)
        for k, v in (d.get("annotations") or {}).items()
    ]
    return [blank(), heading(title), *pairs(items, 2)] if items else []


def render_image(doc: dict[str, Any], media_type: str, digest: str) -> tuple[str, list[Line]]:
    layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    total = sum(int(d.get("size", 0)) for d in layers)
    rows = [
        [str(n), d.get("digest", "?"), human_size(int(d.get("size", 0))), d.get("mediaType", "")]
        for n, d in enumerate(layers, 1)
    ]
    rows.append(["", "total", human_size(total), ""])
    plural = "" if len(layers) == 1 else "s"
    summary = f"{len(layers)} layer{plural}, {human_size(total)}"
    lines = [
        *pairs(_header(doc, media_type, digest)),
        blank(),
        heading(f"Layers ({len(layers)}, {human_size(total)} in total)"),
        *table(["#", "digest", "size", "media type"], rows),
        *_entry_annotations("Layer annotations", layers),
        *_annotations("Annotations", doc.get("annotations")),
    ]
    return f"{KINDS.get(media_type, 'Image manifest')}: {summary}", lines


def render_index(doc: dict[str, Any], media_type: str, digest: str) -> tuple[str, list[Line]]:
    entries = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
    typed = any(d.get("artifactType") for d in entries)
    head = ["#", "platform", "digest", "size", "media type"] + (["artifact type"] if typed else [])
    rows = []
    for n, d in enumerate(entries, 1):
        row = [
            str(n),
            platform(d.get("platform")),
            d.get("digest", "?"),
            human_size(int(d.get("size", 0))),
            d.get("mediaType", ""),
        ]
        rows.append(row + ([d.get("artifactType", "")] if typed else []))
    plural = "" if len(entries) == 1 else "s"
    summary = f"{len(entries)} manifest{plural}"
    lines = [
        *pairs(_header(doc, media_type, digest)),
        blank(),
        heading(f"Manifests ({len(entries)})"),
        *table(head, rows),
        *_entry_annotations("Manifest annotations", entries),
        *_annotations("Annotations", doc.get("annotations")),
    ]
    return f"{KINDS.get(media_type, 'Image index')}: {summary}", lines


def render(
    doc: dict[str, Any], content_type: str | None, digest: str = ""
) -> tuple[str, list[Line]]:
    """An image manifest or an index (told apart by `manifests`). `digest` is the manifest's
    own digest (the registry's Docker-Content-Digest header), if known."""
    media_type = doc.get("mediaType") or content_type or ""
    if isinstance(doc.get("manifests"), list):
        return render_index(doc, media_type, digest)
    return render_image(doc, media_type, digest)


class ManifestView(contentviews.View):
    name = "Registry manifest"

    def __call__(
        self,
        data: bytes,
        *,
        content_type: str | None = None,
        http_message: http.Message | None = None,
        **metadata: Any,
    ) -> contentviews.TViewResult | None:
        doc = parse_json_object(data)
        if doc is None:
            return None
        digest = http_message.headers.get("Docker-Content-Digest", "") if http_message else ""
        description, lines = render(doc, content_type, digest)
        return description, iter(lines)

    def render_priority(
        self, data: bytes, *, content_type: str | None = None, **metadata: Any
    ) -> float:
        return 2 if data and content_type in KINDS else 0

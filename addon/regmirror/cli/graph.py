"""The cached images as a graph: tags and manifests are the images, and each reaches what
its manifest references (an index its platform manifests, a manifest its config and
layers). From it: what an image holds (its size, whether every part is cached), and what
purging one removes. Pure: the caller reads the index and the manifest files (cachedir.py).

A manifest's `subject` (an artifact's link to the image it describes) is not followed: an
artifact never keeps an image alive, nor removing one removes the other."""

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..cache.index import Entry, Tag
from ..routing import names


class Descriptor(NamedTuple):
    digest: str
    size: int | None  # None: the manifest does not say (schema 1)
    platform: str = ""  # an index entry's os/architecture[/variant]


class Manifest(NamedTuple):
    index: bool
    children: tuple[Descriptor, ...]


def parse_manifest(body: bytes) -> Manifest:
    """The descriptors an image manifest or index references, in order: an index's
    manifests, or a manifest's config then layers (a schema 1 manifest's blobs). Raises
    ValueError when the body is no manifest or names a malformed digest."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "manifests" in doc:
        return Manifest(True, tuple(_descriptor(d, platform=True) for d in _list(doc, "manifests")))
    if "config" in doc:
        blobs = [doc["config"], *_list(doc, "layers")]
        return Manifest(False, tuple(_descriptor(d) for d in blobs))
    if "fsLayers" in doc:
        sums = [
            layer.get("blobSum") if isinstance(layer, dict) else None
            for layer in _list(doc, "fsLayers")
        ]
        unique = dict.fromkeys(_digest(s) for s in sums)  # schema 1 repeats empty layers
        return Manifest(False, tuple(Descriptor(d, None) for d in unique))
    raise ValueError("neither an image index nor an image manifest")


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key} is not a list")
    return value


def _digest(value: object) -> str:
    if not isinstance(value, str) or not names.valid_digest(value):
        raise ValueError(f"malformed digest {str(value)[:100]!r}")
    return value


def _descriptor(d: object, platform: bool = False) -> Descriptor:
    if not isinstance(d, dict):
        raise ValueError("a descriptor is not a JSON object")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"descriptor of {d.get('digest')!r} has no valid size")
    p = d.get("platform") if platform else None
    where = ""
    if isinstance(p, dict):
        parts = [p.get("os"), p.get("architecture"), p.get("variant")]
        where = "/".join(str(part) for part in parts if part)
    return Descriptor(_digest(d.get("digest")), size, where)


class Cached(NamedTuple):
    """What the cache held at one moment."""

    content: Mapping[str, Entry]  # by digest
    links: frozenset[tuple[str, str, str]]  # (registry, repository, digest)
    tags: Sequence[Tag]
    manifests: Mapping[str, Manifest]  # the cached manifests whose files could be read


class Image(NamedTuple):
    registry: str
    repository: str
    tag: str  # "": a manifest cached without a tag (pulled by digest, or its tag moved)
    digest: str

    def __str__(self) -> str:
        where = f"{self.registry}/{self.repository}"
        return f"{where}:{self.tag}" if self.tag else f"{where}@{self.digest}"


def images(cached: Cached) -> list[Image]:
    """Every tag, and every manifest linked to a repository that neither a tag of it nor
    another manifest of it (an index) points at."""
    out = {Image(t.registry, t.repository, t.tag, t.digest) for t in cached.tags}
    tagged = {(t.registry, t.repository, t.digest) for t in cached.tags}
    linked: dict[tuple[str, str], set[str]] = defaultdict(set)
    for registry, repository, digest in cached.links:
        entry = cached.content.get(digest)
        if entry is not None and entry.kind == "manifest":
            linked[(registry, repository)].add(digest)
    for (registry, repository), manifests in linked.items():
        inner = {c.digest for m in manifests for c in _children(cached, m)}
        for digest in manifests - inner:
            if (registry, repository, digest) not in tagged:
                out.add(Image(registry, repository, "", digest))
    return sorted(out)


def _children(cached: Cached, digest: str) -> tuple[Descriptor, ...]:
    m = cached.manifests.get(digest)
    return m.children if m else ()


def closure(cached: Cached, digest: str) -> set[str]:
    """The digest and everything it references, as far as the cached manifests tell."""
    seen, todo = {digest}, [digest]
    while todo:
        for child in _children(cached, todo.pop()):
            if child.digest not in seen:
                seen.add(child.digest)
                todo.append(child.digest)
    return seen


class Listing(NamedTuple):
    image: Image
    media_type: str
    size: int  # bytes of the manifest and of everything it references that is cached
    complete: bool  # every manifest, config and layer it references is cached
    last_used: float  # the latest access of any of its parts
    platforms: tuple[tuple[str, str, bool], ...]  # an index's (platform, digest, cached)
    validated: float | None  # a tag's last validation upstream


def describe(cached: Cached, image: Image) -> Listing:
    reached = closure(cached, image.digest)
    held = [cached.content[d] for d in reached if d in cached.content]
    manifests = {d for d in reached if d in cached.content and cached.content[d].kind == "manifest"}
    complete = len(held) == len(reached) and manifests <= cached.manifests.keys()
    top = cached.manifests.get(image.digest)
    platforms = ()
    if top and top.index:
        platforms = tuple((c.platform, c.digest, c.digest in cached.content) for c in top.children)
    validated = None
    for t in cached.tags if image.tag else ():
        if (t.registry, t.repository, t.tag) == (image.registry, image.repository, image.tag):
            validated = t.validated
    return Listing(
        image,
        cached.content[image.digest].media_type,
        sum(e.size for e in held),
        complete,
        max(e.last_access for e in held),
        platforms,
        validated,
    )


def find(cached: Cached, registry: str, repository: str, tag: str, digest: str) -> list[Image]:
    """The images a reference names: its tag; or for a digest, the tags of the repository
    that point at it and the manifest itself, also when it is only part of an index."""
    repo = (registry, repository)
    if tag:
        return [i for i in images(cached) if (i.registry, i.repository, i.tag) == (*repo, tag)]
    found = [i for i in images(cached) if (i.registry, i.repository, i.digest) == (*repo, digest)]
    if not found and (*repo, digest) in cached.links:
        found = [Image(registry, repository, "", digest)]
    return found


class Purge(NamedTuple):
    tags: list[tuple[str, str, str]]  # (registry, repository, tag) to drop
    links: list[tuple[str, str, str]]  # (registry, repository, digest) to drop, content kept
    content: list[str]  # digests to remove: rows (with their links and tags), then files
    shared: list[str]  # what the purged images reach that other images keep
    users: list[Image]  # the other images that reach the purged images' own manifests

    @property
    def nothing(self) -> bool:
        return not (self.tags or self.links or self.content)


def purge(cached: Cached, targets: Iterable[Image]) -> Purge:
    """Purging `targets` drops their tags, and of everything they reach: the content no
    other image references; and the links of their repository that no other image of that
    repository reaches, so that nothing of theirs is served from the cache any more while
    what another repository shares stays for it."""
    gone = set(targets)
    others = [i for i in images(cached) if i not in gone]
    tops = {i.digest for i in gone}
    keep: set[str] = set()
    keep_in: dict[tuple[str, str], set[str]] = defaultdict(set)
    users = []
    for other in others:
        reached = closure(cached, other.digest)
        keep |= reached
        keep_in[(other.registry, other.repository)] |= reached
        if reached & tops:
            users.append(other)
    content: set[str] = set()
    links: set[tuple[str, str, str]] = set()
    shared: set[str] = set()
    for image in gone:
        for digest in closure(cached, image.digest):
            if digest not in cached.content:
                continue
            if digest not in keep:
                content.add(digest)
                continue
            shared.add(digest)
            link = (image.registry, image.repository, digest)
            if link in cached.links and digest not in keep_in[link[:2]]:
                links.add(link)
    tags = {(i.registry, i.repository, i.tag) for i in gone if i.tag}
    return Purge(sorted(tags), sorted(links), sorted(content), sorted(shared), sorted(users))

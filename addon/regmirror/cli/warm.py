"""Pre-warming: each image of a list pulled through the running mirror as a client would
(registry_client.py), so that the mirror fills its cache: the manifest by tag, an index's
platform manifests (all, or those of one platform), then every config and layer, read to
the end and discarded. One image failing does not stop the others."""

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from rich.progress import Progress, TaskID

from .graph import Descriptor, Manifest, parse_manifest
from .references import BadReference, Reference, parse_reference
from .registry_client import PullError, RegistryClient

PLATFORM = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?")


def read_references(lines: Iterable[str], source: str) -> list[Reference]:
    """One reference per line; `#` starts a comment, blank lines are skipped. Raises
    BadReference naming the line."""
    refs = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            refs.append(parse_reference(text))
        except BadReference as e:
            raise BadReference(f"{source} line {number}: {e}") from e
    return refs


def platform_matches(wanted: str, platform: str) -> bool:
    """`linux/arm64` takes `linux/arm64/v8` too; `linux/arm/v7` only itself."""
    parts = wanted.split("/")
    return platform.split("/")[: len(parts)] == parts


class Warmed(NamedTuple):
    reference: Reference
    digest: str = ""
    platforms: int = 0  # platform manifests pulled (0: a single-platform image)
    blobs: int = 0
    size: int = 0  # bytes of its manifests, configs and layers, as `cache ls` counts
    error: str = ""


def pull_image(
    client: RegistryClient, ref: Reference, platform: str, progress: Progress, task: TaskID
) -> Warmed:
    top = client.manifest(ref, ref.digest or ref.tag)
    manifest = _parse(top.body, str(ref))
    blobs: dict[str, Descriptor] = {}
    platforms, size = 0, len(top.body)
    if manifest.index:
        chosen = [
            c for c in manifest.children if not platform or platform_matches(platform, c.platform)
        ]
        if not chosen:
            offered = ", ".join(c.platform or "?" for c in manifest.children)
            raise PullError(f"its index has no {platform} (it has {offered})")
        for entry in chosen:
            body = client.manifest(ref, entry.digest).body
            inner = _parse(body, entry.digest)
            size += len(body)
            if inner.index:
                raise PullError(f"{entry.digest} is an index inside an index")
            blobs |= {b.digest: b for b in inner.children}
        platforms = len(chosen)
    else:
        blobs = {b.digest: b for b in manifest.children}
    progress.update(task, total=sum(b.size or 0 for b in blobs.values()))
    for blob in blobs.values():
        size += client.blob(ref, blob, lambda n: progress.advance(task, n))
    return Warmed(ref, top.digest, platforms, len(blobs), size)


def _parse(body: bytes, what: str) -> Manifest:
    try:
        return parse_manifest(body)
    except ValueError as e:
        raise PullError(f"{what} is not a manifest: {e}") from e


def warm(
    client: RegistryClient,
    refs: list[Reference],
    platform: str,
    progress: Progress,
    pulled: Callable[[list[Warmed]], None] = lambda done: None,
) -> list[Warmed]:
    """Pull every image in turn, each with its progress bar (bytes of configs and layers);
    `pulled` is told after each image."""
    done: list[Warmed] = []
    for number, ref in enumerate(refs, 1):
        task = progress.add_task(f"[{number}/{len(refs)}] {ref}", total=None)
        try:
            done.append(pull_image(client, ref, platform, progress, task))
        except PullError as e:
            done.append(Warmed(ref, error=str(e)))
            progress.update(task, description=f"[{number}/{len(refs)}] {ref}: failed")
        pulled(done)
    return done

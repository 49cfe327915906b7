"""Image references as people write them (`nginx:1`, `ghcr.io/org/app@sha256:…`), read the
way docker reads them: the first component names the registry when it has a dot or a port
or is `localhost`, else it is Docker Hub (`docker.io`, official images under `library/`).
Registries are named by the keys the mirror routes and caches under. Pure."""

from typing import NamedTuple

from ..routing import names
from ..routing.catalog import CATALOG

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
# index.docker.io/library/nginx is docker.io/library/nginx
_ALIASES = {alias: r.key for r in CATALOG.values() for alias in r.aliases}


class BadReference(ValueError):
    pass


class Reference(NamedTuple):
    registry: str
    repository: str  # as the registry knows it: library/nginx
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f"@{self.digest}" if self.digest else f":{self.tag}")


def parse_reference(text: str, default_tag: str = DEFAULT_TAG) -> Reference:
    """`IMAGE[:TAG|@DIGEST]`; with neither, the tag is `default_tag` (docker's `latest`).
    Raises BadReference saying what is wrong."""
    given = text.strip()
    if not given:
        raise BadReference("an empty image reference")
    rest, at, digest = given.partition("@")
    if at and not names.valid_digest(digest):
        raise BadReference(f"{given!r}: {digest!r} is not a digest (sha256:<64 hex digits>)")
    path, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:  # a colon before the last slash is a registry's port
        path, tag = rest, None
    if tag is not None and digest:
        raise BadReference(f"{given!r}: give a tag or a digest, not both")
    if tag is not None and not names.valid_tag(tag):
        raise BadReference(f"{given!r}: {tag!r} is not a tag")
    first, slash, remainder = path.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first.lower(), remainder
    else:
        registry, repository = DOCKER_HUB, path
    registry = _ALIASES.get(registry, registry)
    if registry == DOCKER_HUB:
        repository = names.with_library(repository)
    if not names.valid_name(repository):
        raise BadReference(
            f"{given!r}: {repository!r} is not a repository name (lowercase letters, digits "
            "and separators . _ - /)"
        )
    return Reference(registry, repository, tag or ("" if digest else default_tag), digest)

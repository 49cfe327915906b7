"""Token scopes (`repository:library/nginx:pull`): only what a pull mirror may ask for, with
repositories named as the upstream knows them.

https://distribution.github.io/distribution/spec/auth/scope/
"""

import re
from collections.abc import Callable

from ..routing.names import valid_name

PULL = "pull"
CATALOG_SCOPE = "registry:catalog:*"
# resourcetype [ "(" resourceclass ")" ] ":" resourcename ":" action *( "," action ); the name
# may carry a host:port, so it is what lies between the first and the last colon.
_SCOPE_RE = re.compile(r"(repository|registry)(\([a-z0-9]+\))?:([!-~]+):([a-z*]+(?:,[a-z*]+)*)")


class InvalidScope(ValueError):
    """A scope that does not follow the grammar (non-ASCII, missing parts)."""


def read_only_scopes(
    scopes: list[str],
    rename: Callable[[str], str],
    allows: Callable[[str], bool],
    catalog: bool = False,
) -> list[str]:
    """The scopes the mirror asks an upstream for, given the client's: `pull` only, on
    repositories the route allows (`allows` gets the upstream's name), plus the catalogue
    scope when `catalog`. Push, delete and `*` are dropped, and so are scopes for denied
    repositories and other resources; duplicates go.

    A space-separated value (OAuth2 form) is split first. Raises InvalidScope for a scope
    outside the grammar.
    """
    out: list[str] = []
    for value in scopes:
        for scope in value.split(" "):
            wanted = _read_only(scope, rename, allows, catalog) if scope else ""
            if wanted and wanted not in out:
                out.append(wanted)
    return out


def _read_only(
    scope: str, rename: Callable[[str], str], allows: Callable[[str], bool], catalog: bool
) -> str:
    """The pull-only form of one scope, or "" when nothing of it may be asked for."""
    m = _SCOPE_RE.fullmatch(scope)
    if m is None:
        raise InvalidScope(f"malformed scope {scope[:200]!r}")
    kind, resource_class, name, actions = m.groups()
    if kind == "registry":
        return CATALOG_SCOPE if catalog and scope == CATALOG_SCOPE else ""
    if PULL not in actions.split(","):
        return ""
    upstream = rename(name)
    if not valid_name(upstream):
        raise InvalidScope(f"invalid repository name in scope {scope[:200]!r}")
    return f"repository{resource_class or ''}:{upstream}:{PULL}" if allows(upstream) else ""

"""Token scopes (`repository:library/nginx:pull`): rewriting names for the upstream.

https://distribution.github.io/distribution/spec/auth/scope/
"""

from collections.abc import Callable


def rewrite_scope(scope: str, rename: Callable[[str], str]) -> str:
    """Apply `rename` to the repository name of a `repository:NAME:ACTIONS` scope.

    Other scopes (`registry:catalog:*`) and malformed ones are returned unchanged: the
    upstream's token service is the judge of those.
    """
    resource_type, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and name) or not resource_type.startswith("repository"):
        return scope
    return f"{resource_type}:{rename(name)}:{actions}"


def rewrite_scopes(scopes: list[str], rename: Callable[[str], str]) -> list[str]:
    """Rewrite each scope; a space-separated value (OAuth2 form) is split first."""
    return [rewrite_scope(s, rename) for value in scopes for s in value.split(" ") if s]

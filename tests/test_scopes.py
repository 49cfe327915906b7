import pytest
from regmirror.auth.scopes import InvalidScope, read_only_scopes
from regmirror.routing.names import with_library


def allow_all(name: str) -> bool:
    return True


def no_private(name: str) -> bool:
    return not name.startswith("private/")


@pytest.mark.parametrize(
    "scopes, expected",
    [
        (["repository:nginx:pull"], ["repository:library/nginx:pull"]),
        # push, delete and * are never asked for; pull stays
        (["repository:a/b:pull,push,delete"], ["repository:a/b:pull"]),
        (["repository:a/b:push", "repository:a/c:*", "repository:a/d:delete"], []),
        (["repository(plugin):x:pull"], ["repository(plugin):library/x:pull"]),
        # the catalogue and other registry scopes only with the option
        (["registry:catalog:*"], []),
        # duplicates, also after renaming, go
        (["repository:nginx:pull", "repository:library/nginx:pull,push"],
         ["repository:library/nginx:pull"]),
        # an OAuth2 form value holds several
        (["repository:a:pull repository:b/c:pull", "repository:d:pull"],
         ["repository:library/a:pull", "repository:b/c:pull", "repository:library/d:pull"]),
        ([" ", ""], []),
    ],
)  # fmt: skip
def test_read_only(scopes, expected):
    assert read_only_scopes(scopes, with_library, allow_all) == expected


def test_denied_repositories_are_dropped_by_their_upstream_name():
    scopes = ["repository:private/secret:pull,push,delete", "repository:ubuntu:pull,push"]
    deny_ubuntu = lambda name: no_private(name) and name != "library/ubuntu"  # noqa: E731
    assert read_only_scopes(scopes, with_library, deny_ubuntu) == []
    assert read_only_scopes(scopes, with_library, no_private) == ["repository:library/ubuntu:pull"]


def test_catalog_only_when_allowed():
    scopes = ["registry:catalog:*", "registry:other:*"]
    assert read_only_scopes(scopes, with_library, allow_all, catalog=True) == ["registry:catalog:*"]


@pytest.mark.parametrize(
    "scope",
    ["nonsense", "repository:nginx", "repository::pull", "repository:x:pull\n",
     "repository:\udcff:pull", "repository:é:pull", "repository:a%0Ab:pull",
     "repository:UPPER:pull", "repository:../etc:pull", "repository:x:PULL"],
)  # fmt: skip
def test_malformed_scopes_raise(scope):
    with pytest.raises(InvalidScope):
        read_only_scopes([scope], with_library, allow_all)


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import props, repo_names, wild_text

_scopes = st.one_of(
    wild_text,
    st.builds(
        lambda t, n, a: f"{t}:{n}:{a}",
        st.sampled_from(["repository", "repository(plugin)", "registry", ""]),
        st.one_of(repo_names, wild_text),
        st.sampled_from(["pull", "pull,push", "*", ""]),
    ),
)


@props(200)
@given(st.lists(_scopes, max_size=4), st.booleans())
def test_prop_read_only_scopes_ask_only_for_pull_on_allowed_names(values, catalog):
    try:
        out = read_only_scopes(values, with_library, no_private, catalog)
    except InvalidScope:
        return
    for scope in out:
        if scope == "registry:catalog:*":
            assert catalog
            continue
        kind, name, actions = scope[: scope.index(":")], *scope.split(":", 1)[1].rsplit(":", 1)
        assert kind.startswith("repository") and actions == "pull" and no_private(name)
    assert len(out) == len(set(out))
    # asking again for what was granted changes nothing
    assert read_only_scopes(out, lambda n: n, no_private, catalog) == out

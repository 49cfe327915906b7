from regmirror.names import with_library
from regmirror.scopes import rewrite_scope, rewrite_scopes


def test_rewrite_scope():
    assert rewrite_scope("repository:nginx:pull", with_library) == "repository:library/nginx:pull"
    assert rewrite_scope("repository:a/b:pull,push", with_library) == "repository:a/b:pull,push"
    assert rewrite_scope("repository(plugin):x:pull", with_library) == (
        "repository(plugin):library/x:pull"
    )


def test_other_and_malformed_scopes_unchanged():
    for s in ("registry:catalog:*", "repository:nginx", "nonsense", "repository::pull"):
        assert rewrite_scope(s, with_library) == s


def test_rewrite_scopes_splits_oauth_values():
    assert rewrite_scopes(
        ["repository:a:pull repository:b/c:pull", "repository:d:pull"], with_library
    ) == [
        "repository:library/a:pull",
        "repository:b/c:pull",
        "repository:library/d:pull",
    ]


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


@props(100)
@given(_scopes)
def test_prop_rewrite_scope_with_identity_is_identity(scope):
    assert rewrite_scope(scope, lambda name: name) == scope


@props(100)
@given(_scopes)
def test_prop_rewrite_scope_changes_only_the_name(scope):
    out = rewrite_scope(scope, with_library)
    assert out == scope or (
        out.split(":", 1)[0] == scope.split(":", 1)[0]
        and out.rsplit(":", 1)[1] == scope.rsplit(":", 1)[1]
        and out.endswith(scope.partition(":")[2])
    )


@props(50)
@given(st.lists(_scopes, max_size=4))
def test_prop_rewrite_scopes_with_identity_splits_only(values):
    assert rewrite_scopes(values, lambda name: name) == [
        s for v in values for s in v.split(" ") if s
    ]

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

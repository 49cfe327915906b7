import json

from regmirror.routing.policy import visible_catalog


def no_private(name: str) -> bool:
    return not name.startswith("private/")


def test_visible_catalog_keeps_only_served_repositories():
    body = json.dumps({"repositories": ["a/b", "private/x", "library/c", 3]}).encode()
    assert json.loads(visible_catalog(body, no_private)) == {"repositories": ["a/b", "library/c"]}


def test_anything_else_becomes_an_empty_catalog():
    for body in (b"", b"[]", b'{"repositories": "x"}', b"\xff", b'{"other": 1}'):
        assert json.loads(visible_catalog(body, no_private)) == {"repositories": []}

import json

from regmirror.observe.views.listings import ListView, render
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow
from tests.viewutil import registered, show, text


def test_tags_with_next_page():
    doc = {"name": "library/nginx", "tags": ["1", "1.27", "alpine"]}
    description, lines = render(doc, '</v2/library/nginx/tags/list?last=alpine&n=3>; rel="next"')
    assert description == "library/nginx: 3 tags"
    assert text(lines).splitlines() == [
        "library/nginx: 3 tags",
        "  1",
        "  1.27",
        "  alpine",
        " ",
        'next page: </v2/library/nginx/tags/list?last=alpine&n=3>; rel="next"',
    ]


def test_catalog_and_empty_tags():
    assert render({"repositories": ["a", "b/c"]})[0] == "2 repositories"
    assert render({"name": "x", "tags": None})[0] == "x: 0 tags"


def test_chosen_for_tags_and_catalog_only():
    router = Router()
    body = json.dumps({"name": "library/nginx", "tags": ["1"]}).encode()
    with registered(router) as tctx:
        tctx.options.regmirror_catalog = True
        f = reverse_flow("GET", "/v2/nginx/tags/list")
        router.requestheaders(f)
        respond(f, 200, {"Content-Type": "application/json", "Link": "<x>"}, body)
        description, out = show("auto", f)
        assert description == "library/nginx: 1 tag"
        assert "next page: <x>" in out
        c = reverse_flow("GET", "/v2/_catalog")
        router.requestheaders(c)
        respond(c, 200, {"Content-Type": "application/json"}, b'{"repositories": ["a"]}')
        assert show("auto", c)[0] == "1 repository"
        m = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(m)
        respond(m, 200, {"Content-Type": "application/json"}, body)
        assert ListView().render_priority(body, flow=m, http_message=m.response) == 0
    assert ListView()(b'{"other": 1}') is None

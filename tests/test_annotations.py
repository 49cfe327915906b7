import pytest
from mitmproxy import flowfilter
from mitmproxy.test import taddons
from mitmproxy.tools.web.webaddons import WebAddon
from regmirror.observe.annotations import DENIED, FAILED, Annotations, mark
from regmirror.routing.router import Router
from regmirror.transport import outbound
from regmirror.transport.redirects import Redirects
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

D = "sha256:" + "ab12" * 16
CDN = "https://production.cloudflare.docker.com/registry-v2/blobs/sha256/ab/ab12/data?verify=1"
HUB = {"registry": "docker.io", "upstream": "https://registry-1.docker.io"}
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="http://mirror.test:5000/v2/auth"'}


@pytest.mark.parametrize(
    "status, refused, challenged, expected",
    [(200, False, False, ""), (307, False, False, ""), (401, False, True, ""),
     (401, False, False, DENIED), (403, False, False, DENIED), (405, True, False, DENIED),
     (404, False, False, FAILED), (429, False, False, FAILED), (502, False, False, FAILED)],
)  # fmt: skip
def test_mark(status, refused, challenged, expected):
    assert mark(status, refused, challenged) == expected


def routed(router, annotations, method, path, **kwargs):
    f = reverse_flow(method, path, **kwargs)
    router.requestheaders(f)
    annotations.requestheaders(f)
    return f


def answered(annotations, f, status, headers=None, body=b"", length=None):
    respond(f, status, headers, body)
    if length is not None:  # a streamed body: no content, its size in the header
        f.response.stream, f.response.content = True, None
        f.response.headers["Content-Length"] = str(length)
    annotations.response(f)
    return f


def test_pull_flows_are_annotated_and_failures_marked():
    router, annotations = Router(), Annotations()
    with taddons.context(router, annotations):
        ping = routed(router, annotations, "GET", "/v2/")
        assert answered(annotations, ping, 401, CHALLENGE).comment == (
            "ping docker.io -> 401 challenge"
        )
        assert not ping.marked
        m = routed(router, annotations, "HEAD", "/v2/nginx/manifests/1")
        assert m.comment == "check manifest docker.io/library/nginx:1"
        answered(annotations, m, 200, {"Content-Length": "1234"})
        assert m.comment == "check manifest docker.io/library/nginx:1 -> 200" and not m.marked
        b = routed(router, annotations, "GET", f"/v2/library/nginx/blobs/{D}")
        answered(annotations, b, 200, length=27_100_000)
        assert b.comment == "pull blob docker.io/library/nginx@sha256:ab12ab12ab12… -> 200 27.1 MB"
        missing = routed(router, annotations, "GET", "/v2/nginx/manifests/nope")
        error = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}'
        answered(annotations, missing, 404, {}, error)
        assert missing.comment.endswith(" -> 404 MANIFEST_UNKNOWN")
        assert missing.marked == FAILED
        denied = routed(
            router, annotations, "GET", "/v2/nginx/manifests/1", headers={"Authorization": "x"}
        )
        answered(annotations, denied, 401, CHALLENGE)
        assert denied.marked == DENIED
        put = routed(router, annotations, "PUT", "/v2/nginx/manifests/1")
        annotations.response(put)  # the router answered
        assert put.comment == (
            "pull manifest docker.io/library/nginx:1 -> 405 UNSUPPORTED by router"
        )
        assert put.marked == DENIED


def test_token_scopes_from_query_and_form():
    router, annotations = Router(), Annotations()
    with taddons.context(router, annotations):
        t = routed(router, annotations, "GET", "/v2/auth?scope=repository:library/nginx:pull")
        assert t.comment == "token repository:library/nginx:pull"
        form = b"grant_type=password&scope=repository%3Aa%3Apull+repository%3Ab%3Apull"
        p = reverse_flow(
            "POST",
            "/v2/auth",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(form)),
            },
        )
        p.request.data.content = None  # the body is read after the request headers
        router.requestheaders(p)
        annotations.requestheaders(p)
        assert p.comment == "token (no scope)"
        p.request.content = form
        annotations.request(p)
        assert p.comment == "token repository:a:pull repository:b:pull"


async def test_redirect_flow_names_the_blob_it_fetches(monkeypatch):
    async def public(host: str, timeout: float) -> list[str]:
        return ["104.16.0.1"]

    monkeypatch.setattr(outbound, "resolve", public)
    router, annotations = Router(), Annotations()
    redirects = Redirects(router)
    with taddons.context(router, redirects, annotations, UpstreamConnections()):
        b = routed(router, annotations, "GET", f"/v2/nginx/blobs/{D}")
        respond(b, 307, {"Location": CDN})
        redirects.responseheaders(b)
        annotations.response(b)
        assert b.comment.endswith(" -> 307 production.cloudflare.docker.com")
        location = b.response.headers["Location"]
        r = reverse_flow("GET", location.removeprefix("http://mirror.test:5000"))
        router.requestheaders(r)
        await redirects.requestheaders(r)
        annotations.requestheaders(r)
        assert r.comment == (
            "pull blob docker.io/library/nginx@sha256:ab12ab12ab12… "
            "via production.cloudflare.docker.com"
        )
        answered(annotations, r, 200, length=1000)
        assert r.comment.endswith(" -> 200 1.0 kB")


def test_failed_flow():
    from mitmproxy import flow

    router, annotations = Router(), Annotations()
    with taddons.context(router, annotations):
        f = routed(router, annotations, "GET", f"/v2/nginx/blobs/{D}")
        f.error = flow.Error("connection closed by peer")
        annotations.error(f)
        assert f.comment.endswith(" -> failed: connection closed by peer")
        assert f.marked == FAILED


def test_mitmweb_shows_the_comment_column():
    annotations = Annotations()
    with taddons.context(WebAddon(), annotations) as tctx:
        annotations.running()
        assert tctx.options.web_columns[-1] == "comment"
        tctx.options.web_columns = ["path"]
        annotations.running()
        assert tctx.options.web_columns == ["path"]  # the user's choice stays
    with taddons.context(annotations):
        annotations.running()  # mitmdump: no web columns


def pull_flows(router, annotations, name, failing_tag):
    """The flows of one pull of NAME, a failed pull of NAME:FAILING_TAG included."""
    flows = [
        answered(annotations, routed(router, annotations, "GET", "/v2/"), 401, CHALLENGE),
        answered(
            annotations,
            routed(router, annotations, "GET", f"/v2/auth?scope=repository:{name}:pull"),
            200,
        ),
        answered(annotations, routed(router, annotations, "HEAD", f"/v2/{name}/manifests/1"), 200),
        answered(
            annotations,
            routed(router, annotations, "GET", f"/v2/{name}/blobs/{D}"),
            200,
            length=10,
        ),
        answered(
            annotations,
            routed(router, annotations, "GET", f"/v2/{name}/manifests/{failing_tag}"),
            404,
        ),
    ]
    return flows


def test_documented_filter_expressions_select_one_image():
    router, annotations = Router(), Annotations()
    with taddons.context(router, annotations):
        nginx = pull_flows(router, annotations, "library/nginx", "nope")
        redis = pull_flows(router, annotations, "library/redis", "gone")
        exporter = pull_flows(router, annotations, "library/nginx-exporter", "x")
    everything = [*nginx, *redis, *exporter]

    def selected(expression):
        f = flowfilter.parse(expression)
        return [x for x in everything if f(x)]

    ping, token, head, blob, missing = nginx
    assert selected("~comment library/nginx") == [token, head, blob, missing, *exporter[1:]]
    assert selected(r'~comment "library/nginx(?![\w./-])"') == [token, head, blob, missing]
    assert selected("~u /v2/library/nginx/") == [head, blob, missing]
    assert selected("~u /v2/library/nginx/manifests/") == [head, missing]
    assert selected(r'~comment "library/nginx(?![\w./-])" & ~marked') == [missing]
    assert selected("~marker warning") == [missing, redis[-1], exporter[-1]]
    assert selected("~comment ^token") == [token, redis[1], exporter[1]]


def test_comments_escape_control_characters():
    router, annotations = Router(), Annotations()
    with taddons.context(router, annotations):
        t = routed(router, annotations, "GET", "/v2/auth?scope=repository:a:pull%0Aforged%00")
        assert t.comment == "token repository:a:pull\\nforged\\x00"
        r = routed(router, annotations, "GET", "/x%0Ay\x1b")
        assert "\n" not in r.comment and "\x1b" not in r.comment

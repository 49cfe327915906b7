import json
import time

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons
from regmirror.record import KEY, route
from regmirror.routing.config import ClientAuth as ClientAuthConfig
from regmirror.routing.router import Router
from regmirror.transport.signing import Origin

from tests.flowutil import reverse_flow

D = "sha256:" + "c" * 64


def routed(router, *args, **kwargs):
    f = reverse_flow(*args, **kwargs)
    router.requestheaders(f)
    return f


def error_of(f):
    return json.loads(f.response.content)["errors"][0]


def test_library_inserted_for_docker_hub_keeping_query_and_method():
    r = Router()
    with taddons.context(r):
        f = routed(r, "HEAD", "/v2/nginx/manifests/1-alpine?ns=docker.io")
        assert f.response is None
        assert f.request.method == "HEAD"
        assert f.request.url == (
            "https://registry-1.docker.io/v2/library/nginx/manifests/1-alpine?ns=docker.io"
        )
        assert f.request.host_header == "registry-1.docker.io"
        assert route(f) == {
            "mirror": "http://mirror.test:5000",
            "registry": "docker.io",
            "upstream": "https://registry-1.docker.io",
            "style": "ns",
            "op": "manifest",
            "name": "library/nginx",
            "reference": "1-alpine",
        }
        for path in (f"/v2/nginx/blobs/{D}", "/v2/nginx/tags/list?n=10&last=a"):
            assert routed(r, "GET", path).request.path == path.replace("/v2/", "/v2/library/")
        assert routed(r, "GET", "/v2/bitnami/redis/tags/list").request.path == (
            "/v2/bitnami/redis/tags/list"
        )


def test_no_library_for_other_upstreams():
    r = Router()
    with taddons.context(r):
        f = routed(r, "GET", "/v2/nginx/manifests/1", upstream="http://127.0.0.1:5001")
        assert f.request.url == "http://127.0.0.1:5001/v2/nginx/manifests/1"
        assert f.request.host_header == "127.0.0.1:5001"


def test_dockerhub_hosts_option():
    r = Router()
    with taddons.context(r) as tctx:
        tctx.configure(r, regmirror_dockerhub_hosts=["127.0.0.1:5001"])
        f = routed(r, "GET", "/v2/nginx/manifests/1", upstream="http://127.0.0.1:5001")
        assert f.request.path == "/v2/library/nginx/manifests/1"


def test_route_table():
    r = Router()
    with taddons.context(r) as tctx:
        tctx.configure(
            r,
            regmirror_routes=["hub.test=https://registry-1.docker.io", "ghcr.test=https://ghcr.io"],
        )
        f = routed(r, "GET", "/v2/org/app/manifests/1", host="ghcr.test:5000")
        assert f.request.url == "https://ghcr.io/v2/org/app/manifests/1"
        f = routed(r, "GET", "/v2/org/app/manifests/1", host="unknown.test")
        assert f.response.status_code == 404
        err = error_of(f)
        assert err["code"] == "NAME_UNKNOWN"
        assert err["detail"][:2] == ["ghcr.test -> ghcr.io", "hub.test -> docker.io"]
        with pytest.raises(exceptions.OptionsError, match="regmirror_routes"):
            tctx.configure(r, regmirror_routes=["nonsense"])


def test_root_redirect():
    r = Router()
    with taddons.context(r):
        f = routed(r, "GET", "/")
        assert f.response.status_code == 301
        assert f.response.headers["Location"] == "/v2/"


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        ("GET", "/v2/a/../b/manifests/1", 400, "NAME_INVALID"),
        ("GET", "/v2/nginx/manifests/%2e%2e", 400, "TAG_INVALID"),
        ("GET", "/v2/nginx/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
        ("GET", "/etc/passwd", 404, "UNSUPPORTED"),
        ("PUT", "/v2/nginx/manifests/1", 405, "UNSUPPORTED"),
        ("POST", "/v2/nginx/blobs/uploads/", 405, "UNSUPPORTED"),
        ("DELETE", "/v2/auth", 405, "UNSUPPORTED"),
        ("POST", "/v2/auth", 413, "UNSUPPORTED"),  # no Content-Length: chunked, unbounded
        ("GET", "/v2/_catalog", 403, "DENIED"),  # regmirror_catalog is off
        ("GET", "/v2/nginx/manifests/1?ns=quay.io&ns=ghcr.io", 400, "NAME_INVALID"),
    ],
)
def test_rejections_never_reach_upstream(method, path, status, code):
    r = Router()
    with taddons.context(r):
        f = routed(r, method, path)
        assert f.response.status_code == status
        assert f.response.headers["Content-Type"].startswith("application/json")
        assert error_of(f)["code"] == code
        assert f.request.host == "registry-1.docker.io"  # untouched, never sent
        assert f.metadata[KEY]["outcome"]["answered_by"] == "router"
        assert f.metadata[KEY]["outcome"]["refused"] == error_of(f)["message"]


def test_token_forms_are_bounded():
    r = Router()
    with taddons.context(r):
        ok = routed(r, "POST", "/v2/auth", headers={"Content-Length": "300"})
        assert ok.response is None
        big = routed(r, "POST", "/v2/auth", headers={"Content-Length": str(10**9)})
        assert big.response.status_code == 413


def test_head_rejection_has_no_body_but_length():
    r = Router()
    with taddons.context(r):
        f = routed(r, "HEAD", "/v2/Bad/manifests/1")
        assert f.response.status_code == 400
        assert f.response.content == b""
        assert int(f.response.headers["Content-Length"]) > 0


def test_bad_host_header():
    r = Router()
    with taddons.context(r):
        f = routed(r, "GET", "/v2/", host='x"evil')
        assert f.response.status_code == 400


def test_forwarded_headers_only_when_trusted():
    r = Router()
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pub.example"}
    with taddons.context(r) as tctx:
        f = routed(r, "GET", "/v2/", headers=fwd)
        assert route(f)["mirror"] == "http://mirror.test:5000"
        tctx.configure(r, regmirror_trust_forwarded=True)
        f = routed(r, "GET", "/v2/", headers=fwd)
        assert route(f)["mirror"] == "https://pub.example"


def test_token_and_redirect_paths_are_left_to_their_addons():
    r = Router()
    with taddons.context(r):
        f = routed(r, "GET", "/v2/auth?scope=repository:nginx:pull")
        assert f.response is None and route(f)["op"] == "token"
        assert f.request.path == "/v2/auth?scope=repository:nginx:pull"
        assert f.request.host == "registry-1.docker.io"  # the token proxy decides where
        # a signed redirect gets the route of the request it came from
        origin = Origin("https://cdn.example/b", "docker.io", "blob", "library/a", D)
        f = routed(r, "GET", r.signer.sign(origin, time.time()))
        assert f.response is None
        assert route(f) | {"mirror": ""} == {
            "mirror": "", "op": "blob", "registry": "docker.io",
            "upstream": "https://registry-1.docker.io", "style": "host", "name": "library/a",
            "reference": D, "via": "redirect", "target": "https://cdn.example/b",
        }  # fmt: skip
        forged = routed(r, "GET", "/_regmirror/redirect?u=x&r=docker.io&e=9999999999&s=x")
        assert forged.response.status_code == 403 and route(forged) is None


def test_other_modes_ignored():
    from mitmproxy.test import tflow

    r = Router()
    with taddons.context(r):
        f = tflow.tflow()
        r.requestheaders(f)
        assert KEY not in f.metadata and f.response is None


def test_config_file_and_reload_command(tmp_path, caplog):
    cfg = tmp_path / "mirror.toml"
    cfg.write_text('[registries."lab.example"]\nurl = "http://127.0.0.1:5001"\n')
    r = Router()
    with taddons.context(r) as tctx:
        tctx.configure(r, regmirror_config=str(cfg))
        f = routed(r, "GET", "/v2/lab.example/team/app/manifests/1")
        assert f.request.url == "http://127.0.0.1:5001/v2/team/app/manifests/1"
        cfg.write_text('[registries."lab.example"]\nurl = "http://127.0.0.1:5002"\n')
        tctx.command(r.reload)
        f = routed(r, "GET", "/v2/lab.example/team/app/manifests/1")
        assert f.request.url == "http://127.0.0.1:5002/v2/team/app/manifests/1"
        cfg.write_text("[mirror\n")  # broken: the previous configuration stays
        tctx.command(r.reload)
        assert "keeping the previous configuration" in caplog.text
        assert routed(r, "GET", "/v2/lab.example/a/manifests/1").request.port == 5002
        with pytest.raises(exceptions.OptionsError, match="regmirror_config: .*mirror.toml"):
            tctx.configure(r, regmirror_config=str(cfg))


def test_catalog_by_path_prefix_and_filtered_by_the_deny_list():
    r = Router()
    hub = r.config.registries["docker.io"]
    r.config.registries["docker.io"] = type(hub)(hub.key, hub.upstream, deny=("private/*",))
    with taddons.context(r) as tctx:
        tctx.options.regmirror_catalog = True
        f = routed(r, "GET", "/v2/docker.io/_catalog?n=2")
        assert f.response is None
        assert f.request.url == "https://registry-1.docker.io/v2/_catalog?n=2"
        assert (route(f)["style"], route(f)["prefix"]) == ("path", "docker.io")
        body = json.dumps({"repositories": ["library/a", "private/b"]}).encode()
        f.response = http.Response.make(200, body, {"Content-Type": "application/json"})
        r.response(f)
        assert json.loads(f.response.content) == {"repositories": ["library/a"]}
        assert routed(r, "GET", "/v2/nowhere.example/_catalog").response.status_code == 404


def test_the_route_listing_is_not_shown_under_client_auth():
    r = Router()
    with taddons.context(r):
        r.config = type(r.config)(auth=ClientAuthConfig(tokens=frozenset({"t" * 16})))
        f = routed(r, "GET", "/v2/x.example/a/manifests/1?ns=nowhere.example")
        assert f.response.status_code == 404 and "detail" not in error_of(f)

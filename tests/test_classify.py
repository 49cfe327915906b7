"""The router's decision, as a pure function of the request, the table and the settings."""

import pytest
from mitmproxy import http
from mitmproxy.test import tutils
from regmirror.routing.classify import Refused, Settings, classify
from regmirror.routing.config import parse_config
from regmirror.routing.table import Table
from regmirror.transport.signing import Origin, Signer

CONFIG = parse_config({"registries": {"docker.io": {"deny": ["private/*"]}}})
TABLE = Table(CONFIG, fallback=CONFIG.registries["docker.io"])  # --mode reverse:docker.io
OPEN = Settings(catalog=False, listing=True)
SIGNER = Signer()
D = "sha256:" + "a" * 64


def request(method: str, path: str, **headers: str) -> http.Request:
    return tutils.treq(method=method.encode(), path=path.encode(), headers=http.Headers(**headers))


def decide(method: str, path: str, settings: Settings = OPEN, **headers: str):
    verify = lambda query: SIGNER.verify(query, 0)  # noqa: E731
    return classify(request(method, path, **headers), "http://m", TABLE, settings, verify)


@pytest.mark.parametrize(
    "method, path, op, registry, upstream_path",
    [
        ("GET", "/v2/", "ping", "docker.io", "/v2/"),
        ("HEAD", "/v2/nginx/manifests/1", "manifest", "docker.io", "/v2/library/nginx/manifests/1"),
        ("GET", f"/v2/ghcr.io/org/app/blobs/{D}", "blob", "ghcr.io", f"/v2/org/app/blobs/{D}"),
        ("GET", "/v2/org/app/tags/list?ns=quay.io&n=1", "tags", "quay.io",
         "/v2/org/app/tags/list?ns=quay.io&n=1"),
        ("GET", "/v2/auth/ghcr.io?scope=x", "token", "ghcr.io", "/v2/auth/ghcr.io?scope=x"),
        ("GET", "/", "root", None, ""),
    ],
)  # fmt: skip
def test_routes(method, path, op, registry, upstream_path):
    d = decide(method, path)
    assert d.route["op"] == op
    assert (d.registry.key if d.registry else None) == registry
    assert d.path == upstream_path


@pytest.mark.parametrize(
    "method, path, status, code, routed",
    [
        ("PUT", "/v2/nginx/manifests/1", 405, "UNSUPPORTED", True),
        ("GET", "/v2/private/x/manifests/1", 403, "DENIED", True),
        ("GET", "/v2/_catalog", 403, "DENIED", True),
        ("GET", "/v2/a/../b/manifests/1", 400, "NAME_INVALID", False),
        ("GET", "/v2/x/manifests/1?ns=quay.io&ns=ghcr.io", 400, "NAME_INVALID", False),
        ("GET", "/v2/x/manifests/1?ns=nowhere.example", 404, "NAME_UNKNOWN", False),
        ("GET", "/etc/passwd", 404, "UNSUPPORTED", False),
        ("get", "/v2/", 405, "UNSUPPORTED", False),
        ("POST", "/v2/auth", 413, "UNSUPPORTED", True),
        ("GET", "/_regmirror/redirect?u=x&r=docker.io&e=1&s=x", 403, "DENIED", False),
    ],
)  # fmt: skip
def test_refusals(method, path, status, code, routed):
    with pytest.raises(Refused) as e:
        decide(method, path)
    assert (e.value.status, e.value.code) == (status, code)
    assert (e.value.route is not None) == routed  # what the request was, when known


def test_the_route_listing_only_when_allowed():
    with pytest.raises(Refused) as e:
        decide("GET", "/v2/x/manifests/1?ns=nowhere.example")
    assert "/v2/docker.io/... or ?ns=docker.io" in e.value.detail
    with pytest.raises(Refused) as e:
        decide("GET", "/v2/x/manifests/1?ns=nowhere.example", Settings(False, listing=False))
    assert e.value.detail is None


def test_a_signed_redirect_restores_its_route():
    origin = Origin("https://cdn.example/x", "docker.io", "blob", "library/nginx", D)
    d = decide("GET", SIGNER.sign(origin, 0))
    assert d.route["via"] == "redirect" and d.route["target"] == origin.target
    assert (d.route["name"], d.route["reference"], d.registry.key) == ("library/nginx", D,
                                                                       "docker.io")  # fmt: skip
    assert d.path == ""  # the redirects addon sends it to the target

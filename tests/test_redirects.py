import json
import urllib.parse

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons
from regmirror.answers import answer
from regmirror.record import route
from regmirror.routing.router import Router
from regmirror.transport import outbound
from regmirror.transport.redirects import (
    Redirects,
    client_url,
    rewrite_link,
    rewrite_location,
)
from regmirror.transport.signing import Origin, verify
from regmirror.transport.streaming import Streaming
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

KEY = b"k" * 32
HUB = Origin("", "docker.io", "blob", "library/a", "sha256:1")
UP = "https://registry-1.docker.io"
M = "http://mirror.test:5000"
CDN = "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/ab/x/data?X-Amz-Signature=s&X-Amz-Expires=1200"


def to_mirror(path: str) -> str:
    return M + path


def test_rewrite_location():
    req = UP + "/v2/library/a/blobs/sha256:1"
    # API paths on the upstream itself, relative or absolute: back to the mirror
    assert rewrite_location("/v2/library/a/blobs/sha256:2", req, UP, to_mirror, M, HUB, KEY, 0) == (
        M + "/v2/library/a/blobs/sha256:2"
    )
    assert rewrite_location(UP + "/v2/x?y=1", req, UP, to_mirror, M, HUB, KEY, 0) == M + "/v2/x?y=1"
    # elsewhere: a signed mirror URL, or the absolute target when passing through
    signed = rewrite_location(CDN, req, UP, to_mirror, M, HUB, KEY, 0)
    assert signed.startswith(M + "/_regmirror/redirect?")
    assert verify(signed.split("?", 1)[1], KEY, 0) == HUB._replace(target=CDN)
    assert rewrite_location(CDN, req, UP, to_mirror, M, HUB, None, 0) == CDN
    rel = rewrite_location("//cdn.example/b", req, UP, to_mirror, M, HUB, None, 0)
    assert rel == "https://cdn.example/b"
    # the upstream outside its API, and a look-alike host, are not the mirror's to serve
    assert rewrite_location("/storage/x", req, UP, to_mirror, M, HUB, KEY, 0).startswith(
        M + "/_regmirror/redirect?"
    )
    evil = rewrite_location(UP + ".evil.example/v2/x", req, UP, to_mirror, M, HUB, None, 0)
    assert evil.startswith(UP + ".evil")


def test_rewrite_link():
    req = UP + "/v2/library/a/tags/list?n=2"
    link = f'<{UP}/v2/library/a/tags/list?n=2&last=b>; rel="next"'
    assert rewrite_link(link, req, UP, to_mirror) == (
        f'<{M}/v2/library/a/tags/list?n=2&last=b>; rel="next"'
    )
    # relative links, as distribution sends them, reach the mirror in the client's style
    rel = '</v2/a/tags/list?n=2&last=b>; rel="next"'
    assert rewrite_link(rel, req, UP, to_mirror) == f'<{M}/v2/a/tags/list?n=2&last=b>; rel="next"'
    ns = client_url({"mirror": M, "registry": "ghcr.io", "style": "ns"})
    assert rewrite_link("</v2/_catalog?last=b&n=1>", UP + "/v2/_catalog?n=1", UP, ns) == (
        f"<{M}/v2/_catalog?last=b&n=1&ns=ghcr.io>"
    )
    other = '<https://elsewhere/x>; rel="next"'
    assert rewrite_link(other, req, UP, to_mirror) == other


def test_client_url_keeps_the_clients_style():
    base = {"mirror": M, "registry": "ghcr.io"}
    path = "/v2/org/app/tags/list?n=1"
    assert client_url({**base, "style": "host"})(path) == M + path
    assert client_url({**base, "style": "path", "prefix": "ghcr.io"})(path) == (
        M + "/v2/ghcr.io/org/app/tags/list?n=1"
    )
    assert client_url({**base, "style": "ns"})(path) == M + path + "&ns=ghcr.io"
    assert client_url({**base, "style": "ns"})("/v2/a/blobs/x") == M + "/v2/a/blobs/x?ns=ghcr.io"


def blob_flow(router, method="GET"):
    f = reverse_flow(
        method, "/v2/nginx/blobs/sha256:" + "a" * 64, headers={"Authorization": "Bearer t"}
    )
    router.requestheaders(f)
    return f


async def test_blob_redirect_round_trip(monkeypatch):
    async def public(host: str, timeout: float) -> list[str]:
        assert host == "production.cloudflare.docker.com"
        return ["104.16.0.1"]

    monkeypatch.setattr(outbound, "resolve", public)
    router = Router()
    redirects, streaming = Redirects(router), Streaming()
    with taddons.context(router, redirects, streaming, UpstreamConnections()):
        for method in ("GET", "HEAD"):
            f = blob_flow(router, method)
            respond(f, 307, {"Location": CDN})
            redirects.responseheaders(f)
            location = f.response.headers["Location"]
            assert location.startswith(M + "/_regmirror/redirect?")

            # the client follows it to the mirror, with its token
            path = location[len(M) :]
            g = reverse_flow(method, path, headers={"Authorization": "Bearer t", "Cookie": "c=1"})
            router.requestheaders(g)
            await redirects.requestheaders(g)
            assert g.response is None
            assert g.request.method == method
            assert g.request.url == CDN
            assert g.request.host_header == "production.cloudflare.docker.com"
            assert "Authorization" not in g.request.headers
            assert "Cookie" not in g.request.headers
            # the followed redirect keeps the route of the blob request it came from
            assert route(g) | {"target": ""} == {
                "mirror": M, "op": "blob", "registry": "docker.io",
                "upstream": "https://registry-1.docker.io", "style": "host",
                "name": "library/nginx", "reference": "sha256:" + "a" * 64,
                "via": "redirect", "target": "",
            }  # fmt: skip
            respond(g, 200, {"Content-Length": "5"}, b"hello")
            streaming.responseheaders(g)
            assert g.response.stream is True


async def test_forged_redirect_is_403_and_not_followed():
    router = Router()
    redirects = Redirects(router)
    with taddons.context(router, redirects):
        q = urllib.parse.urlencode({"u": "http://127.0.0.1:22/", "e": "9999999999", "s": "x"})
        g = reverse_flow("GET", "/_regmirror/redirect?" + q)
        router.requestheaders(g)
        await redirects.requestheaders(g)
        assert g.response.status_code == 403
        assert json.loads(g.response.content)["errors"][0]["code"] == "DENIED"
        assert g.request.host == "registry-1.docker.io"


def test_pass_mode():
    router = Router()
    redirects = Redirects(router)
    with taddons.context(router, redirects) as tctx:
        tctx.configure(redirects, regmirror_redirects="pass")
        f = blob_flow(router)
        respond(f, 307, {"Location": CDN})
        redirects.responseheaders(f)
        assert f.response.headers["Location"] == CDN


def test_the_mirrors_own_redirects_are_left_as_they_are():
    """The data plane's 307 (answers.answer) leads where the mirror means it to."""
    router = Router()
    redirects = Redirects(router)
    with taddons.context(router, redirects):
        f = blob_flow(router)
        location = "http://mirror.test:5001/blobs/sha256:1?s=x"
        answer(f, http.Response.make(307, b"", {"Location": location}), "data plane")
        redirects.responseheaders(f)
        assert f.response.headers["Location"] == location


def test_secret_option():
    redirects = Redirects(Router())
    with taddons.context(redirects) as tctx:
        with pytest.raises(exceptions.OptionsError, match="16"):
            tctx.configure(redirects, regmirror_redirect_secret="short")
        tctx.configure(redirects, regmirror_redirect_secret="s" * 16)
        assert redirects.signer.key == b"s" * 16
        other = Redirects(Router())
        assert other.signer.key != redirects.signer.key


def test_streaming_only_for_successful_blobs():
    router, streaming = Router(), Streaming()
    with taddons.context(router, streaming):
        f = blob_flow(router)
        respond(f, 401, {}, b"{}")
        streaming.responseheaders(f)
        assert not f.response.stream
        m = reverse_flow("GET", "/v2/nginx/manifests/1")
        router.requestheaders(m)
        respond(m, 200, {}, b"{}")
        streaming.responseheaders(m)
        assert not m.response.stream


def test_malformed_location_and_link_stay_as_they_are():
    router = Router()
    redirects = Redirects(router)
    with taddons.context(router, redirects):
        f = blob_flow(router)
        respond(f, 307, {"Location": "http://[evil/", "Link": '<http://[evil/>; rel="next"'})
        redirects.responseheaders(f)
        assert f.response.headers["Location"] == "http://[evil/"
        assert f.response.headers["Link"] == '<http://[evil/>; rel="next"'


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.strategies import header_text, mitm_text, props

# Locations as mitmproxy has them, resolved against the request (never empty).
targets = st.one_of(
    st.builds("https://cdn.example/{}".format, mitm_text), st.just(CDN), mitm_text.filter(bool)
)
keys = st.binary(max_size=64)
times = st.floats(0, 4e9)


@props(200)
@given(header_text, st.booleans())
@example("http://[bad", True)
@example("https://cdn.example/\udcff", True)
@example("https://cdn.example/é d", True)
def test_prop_rewrite_location_keeps_clients_at_the_mirror(location, proxy):
    req = UP + "/v2/library/a/blobs/sha256:1"
    out = rewrite_location(location, req, UP, to_mirror, M, HUB, KEY if proxy else None, 1000)
    if out.startswith(M + "/_regmirror/redirect?"):
        # the target, as a URL mitmproxy can send (ASCII, nothing to quote)
        target = verify(out.partition("?")[2], KEY, 1000).target
        assert target.isascii() and target.isprintable() and " " not in target
        assert _unquote(target) == _unquote(urllib.parse.urljoin(req, location))
    elif proxy:  # nowhere else a client could follow
        assert out.startswith(M + "/v2/") or not _followable(out)
    assert not out.startswith(UP + "/v2/")


def _unquote(url: str) -> str:
    return urllib.parse.unquote(url, errors="surrogateescape")


def _followable(url: str) -> bool:
    """Whether a client could connect anywhere with `url`."""
    try:
        u = urllib.parse.urlsplit(url)
        return u.scheme in ("http", "https") and bool(u.hostname) and (u.port or 1) > 0
    except ValueError:  # also from .port: not a number, or out of range
        return False


_link_urls = st.one_of(
    st.builds(lambda p: f"{UP}/v2/{p}", header_text),
    st.builds("https://elsewhere.example/{}".format, header_text),
)


@props(100)
@given(st.lists(st.tuples(_link_urls, st.sampled_from(['; rel="next"', ";rel=prev", ""])),
                max_size=3), header_text)  # fmt: skip
def test_prop_rewrite_link_points_upstream_urls_at_the_mirror(links, noise):
    assume(all("<" not in url and ">" not in url for url, _ in links))
    link = ", ".join(f"<{url}>{params}" for url, params in links)
    out = rewrite_link(link, UP + "/v2/x/tags/list", UP, to_mirror)
    expected = ", ".join(
        f"<{M + url[len(UP) :] if url.startswith(UP) else url}>{params}" for url, params in links
    )
    assert out == expected
    rewrite_link(noise, UP + "/v2/x/tags/list", UP, to_mirror)  # any text: never raises

"""The cache's hooks: hits routed to the file server, fills verified while streaming."""

import asyncio
import hashlib

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry
from regmirror.auth.provenance import ANONYMOUS, CLIENT
from regmirror.auth.token_proxy import TokenAuth
from regmirror.cache.addon import Cache
from regmirror.record import outcome
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

BODY = b"layer bytes " * 100
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
PATH = f"/v2/library/x/blobs/{DIGEST}"


@pytest.fixture
def chain(tmp_path):
    router = Router()
    tokens = TokenAuth(router, UpstreamConnections(), SideRequests())
    cache = Cache(tokens, SideRequests(), CollectorRegistry())
    with taddons.context(router, tokens, cache) as tctx:
        tctx.configure(cache, regmirror_cache=str(tmp_path / "cache"))
        yield router, tokens, cache, tctx


async def routed(router, cache, path=PATH, **headers):
    f = reverse_flow("GET", path, headers=headers or None)
    router.requestheaders(f)
    await cache.requestheaders(f)
    return f


async def fill(router, cache, body=BODY, **headers):
    """A miss answered by the upstream with `body`, streamed through the cache's tee."""
    f = await routed(router, cache, **headers)
    respond(f, 200, {"Content-Type": "application/octet-stream"}, b"")
    f.response.headers["Content-Length"] = str(len(body))
    cache.responseheaders(f)
    sent = f.response.stream(body[:10]) + f.response.stream(body[10:]) + f.response.stream(b"")
    await cache.response(f)
    await asyncio.gather(*cache._background)  # the durable part runs after the answer
    return f, sent


async def test_a_verified_fill_is_stored_and_linked(chain):
    router, tokens, cache, _ = chain
    f, sent = await fill(router, cache)
    assert outcome(f)["cache"] == "miss" and outcome(f)["provenance"] == ANONYMOUS
    assert sent == BODY and not f.error
    assert cache.store.has(DIGEST)
    assert cache.index.linked("docker.io", "library/x", DIGEST).provenance == ANONYMOUS
    assert cache.metrics.entries._value.get() == 1
    assert cache.metrics.size._value.get() == len(BODY)


async def test_a_mismatch_is_never_stored_and_the_client_never_gets_a_whole_body(chain):
    router, tokens, cache, _ = chain
    bad = BODY[:-1] + b"!"
    f, sent = await fill(router, cache, bad)
    assert sent == bad[:-1]  # the last byte held back
    assert f.error and f.error.msg == "Connection killed."
    assert outcome(f)["cache"] == "fill failed: digest mismatch"
    assert (
        not cache.store.has(DIGEST) and cache.index.linked("docker.io", "library/x", DIGEST) is None
    )


async def test_a_hit_goes_to_the_file_server_without_credentials(chain):
    router, tokens, cache, _ = chain
    await fill(router, cache)
    cache.files = type(
        "Files", (), {"url": lambda self, d, t: f"http://127.0.0.1:9/p/{d}?type={t}"}
    )()
    f = await routed(router, cache, Authorization="Bearer t", Range="bytes=0-9", Cookie="c=1")
    assert outcome(f)["cache"] == "hit"
    assert f.request.url == f"http://127.0.0.1:9/p/{DIGEST}?type=application/octet-stream"
    assert "Authorization" not in f.request.headers and "Cookie" not in f.request.headers
    assert f.request.headers["Range"] == "bytes=0-9"
    # through another repository's name the upstream decides
    other = await routed(router, cache, path=f"/v2/library/y/blobs/{DIGEST}")
    assert outcome(other)["cache"] == "miss" and other.request.host == "registry-1.docker.io"


async def test_content_fetched_with_a_clients_own_credentials_is_not_served_to_others(chain):
    router, tokens, cache, _ = chain
    f, _ = await fill(router, cache, Authorization="Bearer alices-own")
    assert outcome(f)["provenance"] == CLIENT
    cache.files = type("Files", (), {"url": lambda self, d, t: "http://127.0.0.1:9/x"})()
    g = await routed(router, cache)
    assert outcome(g)["cache"] == "miss" and g.request.host == "registry-1.docker.io"


def test_an_unusable_directory_is_refused_naming_the_option(tmp_path):
    (tmp_path / "file").write_text("x")
    cache = Cache(
        TokenAuth(Router(), UpstreamConnections(), SideRequests()),
        SideRequests(),
        CollectorRegistry(),
    )
    with taddons.context(cache) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"regmirror_cache: .*file"):
            tctx.configure(cache, regmirror_cache=str(tmp_path / "file" / "cache"))
        with pytest.raises(exceptions.OptionsError, match="regmirror_cache_max_size"):
            tctx.configure(
                cache, regmirror_cache=str(tmp_path / "c"), regmirror_cache_max_size="lots"
            )
        tctx.configure(cache, regmirror_cache="")
        assert cache.store is None

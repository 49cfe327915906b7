"""A HEAD the cache finds to be a hit is answered from the index, with the headers the
cache's file server would send; anything else goes on as before."""

import hashlib

import httpx
import pytest
from mitmproxy.test import taddons
from regmirror.auth.provenance import ANONYMOUS, CLIENT
from regmirror.auth.token_proxy import TokenAuth
from regmirror.cache.addon import Cache
from regmirror.cache.heads import CachedHeads
from regmirror.observe.metrics import Metrics
from regmirror.record import outcome
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import reverse_flow

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
COMPARED = ("Content-Length", "Content-Type", "Docker-Content-Digest", "ETag",
            "Docker-Distribution-Api-Version")  # fmt: skip


def cached(cache: Cache, body: bytes, kind: str, media_type: str, provenance=ANONYMOUS) -> str:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = cache.store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    cache.verified.mark(digest, path)
    cache.index.add(digest, len(body), media_type, kind, 0)
    cache.index.link("docker.io", "library/x", digest, provenance)
    return digest


@pytest.fixture
async def chain(tmp_path):
    router = Router()
    tokens = TokenAuth(router, UpstreamConnections(), SideRequests())
    cache = Cache(tokens, SideRequests(), Metrics().registry)
    heads = CachedHeads(cache)
    with taddons.context(router, tokens, cache, heads) as tctx:
        tctx.configure(cache, regmirror_cache=str(tmp_path / "cache"))
        await cache.running()
        try:
            yield router, cache, heads
        finally:
            await cache.done()


async def asked(chain, method: str, path: str, **headers):
    router, cache, heads = chain
    f = reverse_flow(method, path, headers=headers or None)
    router.requestheaders(f)
    await cache.requestheaders(f)
    heads.requestheaders(f)
    return f


@pytest.mark.parametrize(
    "kind,media_type,body",
    [("manifest", MANIFEST, b'{"schemaVersion": 2}'), ("blob", LAYER, b"L" * 3000)],
)
async def test_a_head_hit_is_answered_with_the_file_servers_headers(chain, kind, media_type, body):
    _, cache, _ = chain
    digest = cached(cache, body, kind, media_type)
    f = await asked(chain, "HEAD", f"/v2/library/x/{kind}s/{digest}")
    assert f.response is not None and f.response.status_code == 200
    assert f.response.content == b"" and int(f.response.headers["Content-Length"]) == len(body)
    assert f.response.headers["Docker-Content-Digest"] == digest
    assert outcome(f)["cache"] == "hit" and "answered_by" not in outcome(f)
    async with httpx.AsyncClient() as client:  # what the way through the file server says
        served = await client.head(cache.files.url(digest, media_type))
    assert served.status_code == 200
    assert {h: f.response.headers[h] for h in COMPARED} == {h: served.headers[h] for h in COMPARED}


async def test_what_still_goes_on(chain):
    _, cache, _ = chain
    blob = cached(cache, b"L" * 3000, "blob", LAYER)
    private = cached(cache, b"P" * 3000, "blob", LAYER, CLIENT)
    flows = [
        await asked(chain, "GET", f"/v2/library/x/blobs/{blob}"),  # a body: the file server
        await asked(chain, "HEAD", f"/v2/library/x/blobs/{blob}", **{"If-None-Match": '"x"'}),
        await asked(chain, "HEAD", f"/v2/library/x/blobs/{blob}", Range="bytes=0-9"),
        await asked(chain, "HEAD", f"/v2/library/y/blobs/{blob}"),  # another repository
        await asked(chain, "HEAD", f"/v2/library/x/blobs/{private}"),  # a client's own
        await asked(chain, "HEAD", "/v2/library/x/blobs/sha256:" + "a" * 64),  # not cached
    ]
    assert [f.response for f in flows] == [None] * 6
    assert [outcome(f)["cache"] for f in flows] == ["hit", "hit", "hit", "miss", "miss", "miss"]
    assert flows[1].request.host == "127.0.0.1"  # to the file server, which answers 304s

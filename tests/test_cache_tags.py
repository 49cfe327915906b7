"""Manifests by tag in the cache (cache/tags.py), and content fetched with a client's own
credentials (cache/client_checks.py), through the cache's hooks. The upstream's answers to
the mirror's HEADs are given (SideRequests.head); decisions are table-tested in
test_cache_decisions.py."""

import asyncio
import hashlib

import httpx
import pytest
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry
from regmirror.auth.provenance import CLIENT
from regmirror.auth.token_proxy import TokenAuth
from regmirror.cache.addon import Cache
from regmirror.record import outcome
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideAnswer, SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

OCI = "application/vnd.oci.image.manifest.v1+json"
BODY = b'{"schemaVersion": 2, "mediaType": "%s"}' % OCI.encode()
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
OTHER = "sha256:" + "0" * 64
TAG = "/v2/library/x/manifests/1"
FILES = "http://127.0.0.1:9/files"


class Upstream:
    """What the upstream answers the mirror's HEADs, and which it got."""

    def __init__(self) -> None:
        self.answer = SideAnswer(200, httpx.Headers({"Docker-Content-Digest": DIGEST}))
        self.heads: list[tuple[str, dict[str, str]]] = []

    async def head(self, url: str, headers: dict[str, str]) -> SideAnswer:
        self.heads.append((url, headers))
        return self.answer


@pytest.fixture
def chain(tmp_path, monkeypatch):
    upstream = Upstream()
    monkeypatch.setattr(SideRequests, "head", lambda _, url, headers: upstream.head(url, headers))
    router, side = Router(), SideRequests()
    tokens = TokenAuth(router, UpstreamConnections(), side)
    cache = Cache(tokens, side, CollectorRegistry())
    with taddons.context(router, tokens, cache) as tctx:
        tctx.configure(cache, regmirror_cache=str(tmp_path / "cache"))
        cache.files = type("Files", (), {"url": lambda self, d, t: f"{FILES}/{d}?type={t}"})()
        yield router, cache, upstream, tctx


async def asked(router, cache, path=TAG, method="GET", **headers):
    f = reverse_flow(method, path, headers={"Accept": OCI, **headers})
    router.requestheaders(f)
    await cache.requestheaders(f)
    return f


async def answered(cache, f, status=200, body=BODY, digest=DIGEST):
    headers = {"Content-Type": OCI, **({"Docker-Content-Digest": digest} if digest else {})}
    respond(f, status, headers, body if f.request.method == "GET" else b"")
    await cache.response(f)
    await asyncio.gather(*cache._background)


async def cached_tag(router, cache, **headers):
    f = await asked(router, cache, **headers)
    assert outcome(f)["cache"] == "miss" and f.request.host == "registry-1.docker.io"
    await answered(cache, f)
    tag = cache.index.tag("docker.io", "library/x", "1")
    assert tag is not None and tag.digest == DIGEST
    return tag


def served_from_cache(f) -> bool:
    return f.request.url.startswith(f"{FILES}/{DIGEST}")


async def test_a_tag_is_stored_with_its_manifest_and_revalidated_with_a_head(chain):
    router, cache, upstream, _ = chain
    before = await cached_tag(router, cache, Authorization="Bearer t")
    f = await asked(router, cache, Authorization="Bearer t")
    assert outcome(f)["cache"] == "hit" and served_from_cache(f)
    ((url, headers),) = upstream.heads
    assert url == "https://registry-1.docker.io/v2/library/x/manifests/1"
    assert headers == {"authorization": "Bearer t", "accept": OCI}  # what the upstream needs
    await asyncio.sleep(0.01)
    assert cache.index.tag("docker.io", "library/x", "1").validated > before.validated


async def test_a_tag_within_its_ttl_is_not_revalidated(chain):
    router, cache, upstream, tctx = chain
    tctx.options.regmirror_tag_ttl = 3600
    await cached_tag(router, cache)
    f = await asked(router, cache, method="HEAD")
    assert outcome(f)["cache"] == "hit" and served_from_cache(f) and upstream.heads == []


@pytest.mark.parametrize(
    "answer,stale_if_error,result",
    [
        (SideAnswer(200, httpx.Headers({"Docker-Content-Digest": OTHER})), 604800, "miss"),
        (SideAnswer(None, httpx.Headers(), "HEAD failed: refused"), 604800, "stale"),
        (SideAnswer(503, httpx.Headers()), 604800, "stale"),
        (SideAnswer(429, httpx.Headers()), 604800, "stale"),
        (SideAnswer(503, httpx.Headers()), 0, "miss"),  # off: the failure is the answer
        (SideAnswer(401, httpx.Headers()), 604800, "miss"),  # passes through
        (SideAnswer(404, httpx.Headers()), 604800, "miss"),
    ],
)
async def test_what_the_upstream_says_of_a_cached_tag(chain, answer, stale_if_error, result):
    router, cache, upstream, tctx = chain
    tctx.options.regmirror_stale_if_error = stale_if_error
    await cached_tag(router, cache)
    upstream.answer = answer
    f = await asked(router, cache)
    assert outcome(f)["cache"] == result
    assert served_from_cache(f) is (result == "stale")
    kept = cache.index.tag("docker.io", "library/x", "1")
    assert (kept is None) is (answer.status == 404)  # a 404 drops the tag


async def test_a_client_that_accepts_another_type_goes_upstream(chain):
    router, cache, upstream, _ = chain
    await cached_tag(router, cache)
    f = await asked(router, cache, Accept="application/vnd.oci.image.index.v1+json")
    assert outcome(f)["cache"] == "miss" and upstream.heads == []


async def test_a_manifest_that_is_not_its_digest_is_a_502_and_not_stored(chain):
    router, cache, _, _ = chain
    f = await asked(router, cache)
    await answered(cache, f, digest=OTHER)
    assert f.response.status_code == 502
    assert outcome(f)["cache"] == "fill failed: digest mismatch"
    assert cache.index.tag("docker.io", "library/x", "1") is None
    assert not cache.store.has(OTHER) and not cache.store.has(DIGEST)


async def test_an_upstream_answer_for_a_tag_it_does_not_know_updates_nothing_but_404(chain):
    router, cache, upstream, _ = chain
    await cached_tag(router, cache)
    upstream.answer = SideAnswer(200, httpx.Headers({"Docker-Content-Digest": OTHER}))
    moved = await asked(router, cache)  # moved: the GET goes upstream, and 404s there
    assert outcome(moved)["cache"] == "miss"
    await answered(cache, moved, status=404, body=b"{}", digest="")
    assert cache.index.tag("docker.io", "library/x", "1") is None


async def test_a_head_that_came_first_sets_the_tag_once_the_manifest_is_cached(chain):
    router, cache, _, _ = chain
    head = await asked(router, cache, method="HEAD")  # containerd resolves with a HEAD
    assert outcome(head)["cache"] == "miss"
    await answered(cache, head)
    assert cache.index.tag("docker.io", "library/x", "1") is None  # nothing to point at yet
    get = await asked(router, cache, path=f"/v2/library/x/manifests/{DIGEST}")
    await answered(cache, get)
    assert cache.index.tag("docker.io", "library/x", "1").digest == DIGEST


async def test_client_content_is_served_only_to_whom_the_upstream_accepts(chain):
    router, cache, upstream, _ = chain
    path = f"/v2/library/x/manifests/{DIGEST}"
    f = await asked(router, cache, path=path, Authorization="Bearer alices-own")
    assert outcome(f)["provenance"] == CLIENT
    await answered(cache, f)
    anonymous = await asked(router, cache, path=path)
    assert outcome(anonymous)["cache"] == "miss" and upstream.heads == []  # not even asked
    for _ in range(2):  # the upstream's yes is remembered
        again = await asked(router, cache, path=path, Authorization="Bearer alices-own")
        assert outcome(again)["cache"] == "hit" and served_from_cache(again)
    assert [h["authorization"] for _, h in upstream.heads] == ["Bearer alices-own"]
    upstream.answer = SideAnswer(401, httpx.Headers())
    mallory = await asked(router, cache, path=path, Authorization="Bearer mallorys")
    assert outcome(mallory)["cache"] == "miss"
    upstream.answer = SideAnswer(None, httpx.Headers(), "HEAD failed: refused")
    down = await asked(router, cache, path=path, Authorization="Bearer bobs")
    assert outcome(down)["cache"] == "miss"  # cannot be checked: fail closed

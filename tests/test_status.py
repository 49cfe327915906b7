import asyncio
import hashlib
import json
import re
import threading
import time

import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry, Counter
from regmirror.addons import mirror_addons
from regmirror.auth.client_auth import ClientAuth
from regmirror.auth.provenance import Provenances
from regmirror.auth.token_proxy import TokenAuth, basic_auth
from regmirror.cache.addon import Cache
from regmirror.observe.activity import Activity
from regmirror.observe.status import (
    HEALTH_PATH,
    METRICS_PATH,
    PAGE_PATH,
    READY_PATH,
    Shared,
    StatusEndpoints,
    answer,
    page_params,
)
from regmirror.observe.views import Views
from regmirror.routing.config import ClientAuth as ClientAuthConfig
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import reverse_flow


def test_answers():
    registry = CollectorRegistry()
    Counter("regmirror_test", "A test counter.", registry=registry).inc(3)
    health = answer("GET", HEALTH_PATH, registry)
    assert (health.status_code, health.content) == (200, b"ok\n")
    metrics = answer("GET", METRICS_PATH, registry)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    assert b"regmirror_test_total 3.0" in metrics.content
    head = answer("HEAD", METRICS_PATH, registry)
    assert head.content == b"" and head.headers["Content-Length"] == str(len(metrics.content))
    assert answer("POST", HEALTH_PATH, registry).status_code == 405
    assert answer("GET", "/v2/", registry) is None
    assert answer("GET", "/_regmirror/redirect", registry) is None


async def run_hooks(tctx: taddons.context, flow: http.HTTPFlow, *hooks) -> None:
    for hook in hooks:
        await tctx.master.addons.trigger_event(hook(flow))


async def test_answered_before_routing():
    """The mirror's whole chain, as mitmproxy runs it for a request answered in
    requestheaders (requestheaders, request, response)."""
    addons = mirror_addons()
    views = next(a for a in addons if isinstance(a, Views))
    status = next(a for a in addons if isinstance(a, StatusEndpoints))
    answered = (HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook)
    with taddons.context(Proxyserver(), *addons) as tctx:
        try:
            # the mirror's host is routed to another upstream than --mode's
            tctx.configure(status, regmirror_routes=["mirror.test:5000=http://127.0.0.1:5999"])
            routed = reverse_flow("GET", "/v2/")
            await run_hooks(tctx, routed, HttpRequestHeadersHook)
            assert routed.response is None
            assert (routed.request.host, routed.request.port) == ("127.0.0.1", 5999)
            refused = reverse_flow("PUT", "/v2/x/manifests/1")  # answered by the router
            await run_hooks(tctx, refused, *answered)
            assert refused.response.status_code == 405

            health = reverse_flow("GET", HEALTH_PATH + "?probe=1")
            await run_hooks(tctx, health, *answered)
            assert (health.response.status_code, health.response.content) == (200, b"ok\n")
            assert (health.request.host, health.request.port) == ("registry-1.docker.io", 443)
            metrics = reverse_flow("GET", METRICS_PATH)
            await run_hooks(tctx, metrics, HttpRequestHeadersHook)
            assert metrics.response.status_code == 200
            assert metrics.request.host == "registry-1.docker.io"
            counted = [
                line
                for line in metrics.response.text.splitlines()
                if line.startswith("regmirror_requests_total{")
            ]
            # the refused PUT counts, the health check does not
            assert len(counted) == 1 and 'status="405"' in counted[0], counted
        finally:
            views.done()  # the content views are global


async def test_metrics_need_credentials_under_client_auth_unless_the_network_is_open():
    router = Router()
    router.config = type(router.config)(auth=ClientAuthConfig(tokens=frozenset({"s" * 20})))
    client_auth = ClientAuth(router, Provenances())
    status = StatusEndpoints(CollectorRegistry(), client_auth.admits)
    with taddons.context(status, router, client_auth) as tctx:
        f = reverse_flow("GET", METRICS_PATH)
        await status.requestheaders(f)
        assert f.response.status_code == 401 and b"regmirror" not in f.response.content
        for header in ("Bearer " + "s" * 20, basic_auth("prometheus", "s" * 20)):
            g = reverse_flow("GET", METRICS_PATH, headers={"Authorization": header})
            await status.requestheaders(g)
            assert g.response.status_code == 200, header
        wrong = reverse_flow("GET", METRICS_PATH, headers={"Authorization": "Bearer \udcff"})
        await status.requestheaders(wrong)
        assert wrong.response.status_code == 401
        h = reverse_flow("GET", HEALTH_PATH)  # load balancers need no credentials
        await status.requestheaders(h)
        assert h.response.status_code == 200
        tctx.configure(status, regmirror_metrics_allow=["127.0.0.0/8", "::1"])
        s = reverse_flow("GET", METRICS_PATH)
        s.client_conn.peername = ("127.0.0.1", 40000)
        await status.requestheaders(s)
        assert s.response.status_code == 200
        with pytest.raises(exceptions.OptionsError, match="regmirror_metrics_allow"):
            tctx.configure(status, regmirror_metrics_allow=["10.0.0.0/33"])


def test_page_params():
    assert page_params({}) == ("", "pulled", 0)
    assert page_params({"q": "x" * 500, "sort": "size", "refresh": "1"}) == ("x" * 200, "size", 5)
    assert page_params({"sort": "evil", "refresh": "99999"}) == ("", "pulled", 3600)
    assert page_params({"refresh": "soon"})[2] == 0
    assert page_params({"q": "a\udcffb"})[0] == "a\\udcffb"  # ?q=a%FFb: no UTF-8


async def test_callers_share_the_job_that_runs():
    shared, runs, gate = Shared(), [], threading.Event()

    def job():
        runs.append(1)
        gate.wait(5)
        return len(runs)

    first = asyncio.ensure_future(shared.run(job, 5))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(shared.run(job, 5))
    gate.set()
    assert await asyncio.gather(first, second) == [1, 1]
    assert await shared.run(job, 5) == 2  # a new call once it has ended
    gate.clear()
    with pytest.raises(TimeoutError):
        await shared.run(job, 0.05)
    gate.set()


@pytest.fixture
async def status_chain(tmp_path):
    """The status endpoints with a real cache in tmp_path/cache, started."""
    router = Router()
    tokens = TokenAuth(router, UpstreamConnections(), SideRequests())
    registry = CollectorRegistry()
    cache = Cache(tokens, SideRequests(), registry)
    status = StatusEndpoints(registry, None, cache, Activity(registry))
    with taddons.context(router, tokens, cache, status) as tctx:
        tctx.configure(cache, regmirror_cache=str(tmp_path / "cache"),
                       regmirror_cache_max_size="1m")  # fmt: skip
        try:
            yield status, cache
        finally:
            await cache.done()


async def get(status: StatusEndpoints, path: str, method: str = "GET") -> http.Response:
    f = reverse_flow(method, path)
    await status.requestheaders(f)
    assert f.response is not None, path
    return f.response


async def test_readyz_after_the_start_while_the_cache_can_be_written(status_chain):
    status, cache = status_chain
    starting = await get(status, READY_PATH)
    assert starting.status_code == 503
    assert json.loads(starting.content)["checks"]["config"] == {
        "ok": False, "detail": "the mirror is starting"}  # fmt: skip
    await cache.running()  # the file server
    status.running()
    ready = await get(status, READY_PATH)
    assert (ready.status_code, ready.headers["Content-Type"]) == (200, "application/json")
    assert json.loads(ready.content) == {
        "ready": True,
        "checks": {
            "config": {"ok": True, "detail": "loaded"},
            "cache": {"ok": True, "detail": "writable"},
        },
    }
    head = await get(status, READY_PATH, "HEAD")
    assert head.status_code == 200 and head.content == b""
    cache.store.tmp.rmdir()  # where fills are written
    broken = await get(status, READY_PATH)
    assert broken.status_code == 503
    assert json.loads(broken.content)["checks"]["cache"] == {
        "ok": False,
        "detail": "the cache directory cannot be written: No such file or directory",
    }
    assert str(cache.store.root) not in broken.text  # readyz is open: no paths
    assert (await get(status, READY_PATH, "POST")).status_code == 405


async def test_readyz_without_a_cache():
    status = StatusEndpoints(CollectorRegistry())
    with taddons.context(status):
        status.running()
        ready = await get(status, READY_PATH)
    assert ready.status_code == 200
    assert json.loads(ready.content)["checks"]["cache"] == {"ok": True, "detail": "off"}


async def test_the_page_lists_what_the_cache_holds(status_chain):
    status, cache = status_chain
    body = b'{"layers": []}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = cache.store.path(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(body)
    cache.index.add(digest, len(body), "application/json", "manifest", time.time())
    cache.index.set_tag("docker.io", "library/nginx", "1-alpine", digest, "application/json", 0)
    resp = await get(status, PAGE_PATH + "?q=nginx")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    nonce = re.search(r'<script nonce="([^"]+)">', resp.text)[1]
    assert f"script-src 'nonce-{nonce}'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "<td>docker.io/library/nginx:1-alpine</td>" in resp.text
    assert f'title="{digest}"' in resp.text and 'value="nginx"' in resp.text
    assert 'max="1048576" value="14"' in resp.text  # 14 bytes of 1 MiB
    none = await get(status, PAGE_PATH + "?q=redis%FF")
    assert "nginx:1-alpine" not in none.text and 'value="redis\\udcff"' in none.text
    again = await get(status, PAGE_PATH)
    assert nonce not in again.text  # a new nonce each time
    assert (await get(status, "/_regmirror")).headers["Location"] == PAGE_PATH
    head = await get(status, PAGE_PATH, "HEAD")
    assert head.content == b"" and int(head.headers["Content-Length"]) > 1000
    assert metric_value(status.registry, "regmirror_cache_max_size_bytes") == 1 << 20


def metric_value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


async def test_the_page_needs_credentials_under_client_auth():
    router = Router()
    router.config = type(router.config)(auth=ClientAuthConfig(tokens=frozenset({"s" * 20})))
    client_auth = ClientAuth(router, Provenances())
    status = StatusEndpoints(CollectorRegistry(), client_auth.admits)
    with taddons.context(status, router, client_auth):
        refused = await get(status, PAGE_PATH)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="regmirror"'
        f = reverse_flow("GET", PAGE_PATH, headers={"Authorization": basic_auth("me", "s" * 20)})
        await status.requestheaders(f)
        assert f.response.status_code == 200 and "s" * 20 not in f.response.text
        assert "off (<code>regmirror_cache</code> is empty)" in f.response.text
        status.running()
        assert (await get(status, READY_PATH)).status_code == 200  # probes need none

import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry, Counter
from regmirror.addons import mirror_addons
from regmirror.auth.client_auth import ClientAuth
from regmirror.auth.token_proxy import basic_auth
from regmirror.observe.status import HEALTH_PATH, METRICS_PATH, StatusEndpoints, answer
from regmirror.observe.views import Views
from regmirror.routing.config import ClientAuth as ClientAuthConfig
from regmirror.routing.router import Router

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
    client_auth = ClientAuth(router)
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

import json

from mitmproxy import hooks, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow
from regmirror import guard
from regmirror.addons import mirror_addons
from regmirror.observe.views import Views
from regmirror.record import KEY

from tests.flowutil import respond, reverse_flow

# Hooks mitmproxy runs for the whole process, not for a flow or a connection.
LIFECYCLE = {"load", "configure", "running", "done", "update"}


class Boom:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.host = "upstream.example"  # what the router does first
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    async def request(self, flow: http.HTTPFlow) -> None:
        raise ValueError("async boom")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        raise KeyError("registry")

    def response(self, flow: http.HTTPFlow) -> None:
        raise TypeError("boom")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        raise RuntimeError("boom")


class Later:
    """An addon after the faulty one: it still runs, and sees the answer."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.seen.append(flow.response.status_code if flow.response else None)


def _error(resp: http.Response) -> dict:
    return json.loads(resp.content)["errors"][0]


def test_raising_request_hook_answers_500_and_later_addons_see_it(caplog):
    boom, later = guard.guarded([Boom(), Later()])
    f = reverse_flow("GET", "/v2/library/x/manifests/1")
    with caplog.at_level("ERROR"):
        boom.requestheaders(f)
        later.requestheaders(f)
    assert f.response.status_code == 500
    assert _error(f.response) == {"code": "UNKNOWN", "message": "internal error in the mirror"}
    assert "surrogates" not in f.response.text  # no internals in the body
    assert f.metadata[KEY]["outcome"]["fault"] == "Boom.requestheaders"
    assert later.seen == [500]
    assert "Boom.requestheaders raised UnicodeEncodeError" in caplog.text


async def test_raising_async_hook_answers_500():
    (boom,) = guard.guarded([Boom()])
    f = reverse_flow("HEAD", "/v2/library/x/manifests/1")
    await boom.request(f)
    assert f.response.status_code == 500
    assert f.response.content == b"" and int(f.response.headers["Content-Length"]) > 0


def test_raising_responseheaders_drains_the_upstream_body():
    (boom,) = guard.guarded([Boom()])
    f = respond(reverse_flow("GET", "/v2/x/blobs/sha256:" + "a" * 64), 200, body=b"")
    boom.responseheaders(f)
    resp = f.response
    assert resp.status_code == 500 and isinstance(resp.stream, guard.Drain)
    body = resp.stream(b"upstream bytes") + resp.stream(b"")
    assert body == guard.fault_response(f).content
    assert resp.headers["Content-Length"] == str(len(body))


def test_raising_response_replaces_a_buffered_answer():
    (boom,) = guard.guarded([Boom()])
    f = respond(reverse_flow(), 200, body=b'{"token": "t"}')
    boom.response(f)
    assert f.response.status_code == 500


def test_raising_server_connect_refuses_the_connection():
    (boom,) = guard.guarded([Boom()])
    data = server_hooks.ServerConnectionHookData(tflow.tserver_conn(), tflow.tclient_conn())
    boom.server_connect(data)
    assert data.server.error == guard.MESSAGE


def test_guarding_twice_wraps_once():
    addon = Boom()
    guard.guarded([addon])
    wrapped = addon.requestheaders
    guard.guarded([addon])
    assert addon.requestheaders is wrapped


def test_every_flow_and_connection_hook_of_the_mirror_is_guarded():
    names = {h.name for h in hooks.all_hooks.values()} - LIFECYCLE
    assert set(guard.GUARDED_HOOKS) <= names
    unguarded = [
        f"{type(a).__name__}.{name}"
        for a in mirror_addons()
        for name in names
        if callable(getattr(a, name, None))
        and not getattr(getattr(a, name), "regmirror_guarded", False)
    ]
    assert unguarded == []


async def test_a_raising_mirror_hook_never_lets_the_request_go_upstream(monkeypatch, caplog):
    """The whole chain, as mitmproxy runs it: a crash in client auth (after the router has
    set the upstream) leaves the flow answered by the mirror."""
    from regmirror.auth.client_auth import ClientAuth

    def explode(self, flow):
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "boom")

    monkeypatch.setattr(ClientAuth, "requestheaders", explode)
    addons = mirror_addons()
    views = next(a for a in addons if isinstance(a, Views))
    with taddons.context(Proxyserver(), *addons) as tctx, caplog.at_level("ERROR"):
        for path in ("/v2/library/x/manifests/1", "/v2/auth?scope=x"):
            f = reverse_flow("GET", path, headers={"Authorization": "Bearer x"})
            await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
            assert f.response is not None and f.response.status_code == 500
            assert f.metadata[KEY]["outcome"]["fault"] == "ClientAuth.requestheaders"
        views.done()  # the content views are global
    assert "Addon error" not in caplog.text  # the guard caught it, not mitmproxy

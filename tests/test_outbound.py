"""The realm and redirect-target policy at the hooks: what TokenAuth learns and where it
sends token requests (and the route's credentials), which signed redirects the mirror
follows, and resolution that never blocks the event loop."""

import asyncio
import json
import socket
import time

import pytest
from mitmproxy.test import taddons
from regmirror.auth.challenge import bearer_challenge
from regmirror.auth.token_proxy import TokenAuth
from regmirror.routing.catalog import Registry
from regmirror.routing.router import Router
from regmirror.routing.upstreams import parse_upstream
from regmirror.transport import outbound
from regmirror.transport.redirects import Redirects
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow

UP = "https://registry.example"
M = "http://mirror.test:5000"
CREDS = "Basic bWlycm9yLWJvdDpwdw=="  # mirror-bot:pw, the route's credentials


def challenge(realm: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.example"'}


def fake_dns(monkeypatch, table: dict[str, list[str]]) -> list[str]:
    """outbound.resolve answers from `table` (no DNS in unit tests); returns the names asked."""
    asked: list[str] = []

    async def resolve(host: str, timeout: float) -> list[str]:
        asked.append(host)
        return table.get(host, [])

    monkeypatch.setattr(outbound, "resolve", resolve)
    return asked


def addons(**registry):
    router = Router()
    router.config.registries["registry.example"] = Registry(
        "registry.example", parse_upstream(UP, []), username="mirror-bot", password="pw", **registry
    )
    return router, TokenAuth(router, UpstreamConnections(), SideRequests()), Redirects(router)


def error(flow) -> dict:
    return json.loads(flow.response.content)["errors"][0]


def learn(router, auth, realm: str):
    f = reverse_flow("GET", "/v2/", upstream=UP)
    router.requestheaders(f)
    respond(f, 401, challenge(realm))
    auth.responseheaders(f)
    auth.response(f)
    return f


async def token_request(router, auth):
    t = reverse_flow("GET", "/v2/auth?scope=repository:a/b:pull", upstream=UP)
    router.requestheaders(t)
    await auth.requestheaders(t)
    return t


@pytest.mark.parametrize(
    "realm,reason",
    [("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is an internal address"),
     ("http://127.0.0.1:8080/token", "127.0.0.1 is an internal address"),
     ("http://[::ffff:10.0.0.1]/token", "10.0.0.1 is an internal address"),
     ("http://[fd00::1]/token", "fd00::1 is an internal address"),
     ("http://0.0.0.0:5001/token", "0.0.0.0 is an internal address")],
)  # fmt: skip
async def test_an_internal_realm_is_refused_and_never_used(realm, reason, caplog):
    router, auth, _ = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        f = learn(router, auth, realm)
        assert f.response.status_code == 502
        assert error(f)["code"] == "UNAVAILABLE"
        assert f"of registry.example refused: {reason}" in error(f)["message"]
        assert f"refused: {reason}" in caplog.text
        assert UP not in auth.challenges and not auth.realms.hosts

        # the token request probes /v2/, learns the same realm, and refuses it too
        class Challenged:
            status_code = 401
            headers = challenge(realm)

        async def get(url):
            return Challenged()

        auth.side._client = type("C", (), {"get": staticmethod(get)})()
        t = await token_request(router, auth)
        auth.side._client = None
        assert t.response.status_code == 502 and error(t)["code"] == "UNAVAILABLE"
        assert t.request.host == "registry.example"  # not sent anywhere
        assert "Authorization" not in t.request.headers  # no credentials added


async def test_a_realm_name_resolving_inside_is_refused_before_the_request(monkeypatch):
    asked = fake_dns(monkeypatch, {"auth.registry.example": ["52.0.0.1", "10.0.0.9"]})
    router, auth, _ = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        learn(router, auth, "https://auth.registry.example/token")  # a name: judged before use
        t = await token_request(router, auth)
        assert asked == ["auth.registry.example"]
        assert t.response.status_code == 502
        assert "resolves to an internal address (10.0.0.9)" in error(t)["message"]
        assert "Authorization" not in t.request.headers and t.request.host == "registry.example"


async def test_a_realm_that_does_not_resolve_is_refused(monkeypatch):
    fake_dns(monkeypatch, {})
    router, auth, _ = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        learn(router, auth, "https://auth.registry.example/token")
        t = await token_request(router, auth)
        assert t.response.status_code == 502
        assert "auth.registry.example does not resolve" in error(t)["message"]


async def test_credentials_go_only_to_the_pinned_realm_host(monkeypatch, caplog):
    fake_dns(monkeypatch, {"auth.registry.example": ["52.0.0.1"], "evil.example": ["52.0.0.2"]})
    router, auth, _ = addons()
    with taddons.context(router, auth, UpstreamConnections()):
        first = learn(router, auth, "https://auth.registry.example/token")
        assert first.response.status_code == 401
        assert auth.realms.hosts == {UP: "auth.registry.example"}
        t = await token_request(router, auth)
        assert t.response is None and t.request.host == "auth.registry.example"
        assert t.request.headers["Authorization"] == CREDS

        # a later challenge names another realm host: refused, never learned
        moved = learn(router, auth, "https://evil.example/token")
        assert moved.response.status_code == 502
        assert "the realm host evil.example is not the one pinned for it" in error(moved)["message"]
        assert "evil.example" in caplog.text
        assert auth.challenges[UP].params["realm"] == "https://auth.registry.example/token"
        again = await token_request(router, auth)
        assert again.request.host == "auth.registry.example"

        # whatever put it there, a realm off the pin gets no request and no credentials
        auth.challenges[UP] = bearer_challenge('Bearer realm="https://evil.example/token"')
        off = await token_request(router, auth)
        assert off.response.status_code == 502 and "pinned" in error(off)["message"]
        assert "Authorization" not in off.request.headers
        assert off.request.host == "registry.example"


async def test_configured_realm_hosts_pin_and_allow_internal_realms(monkeypatch):
    asked = fake_dns(monkeypatch, {})
    router, auth, _ = addons(realm_hosts=("10.0.0.6",))
    with taddons.context(router, auth, UpstreamConnections()):
        assert learn(router, auth, "http://10.0.0.6:5001/token").response.status_code == 401
        t = await token_request(router, auth)
        assert t.response is None
        assert (t.request.host, t.request.port) == ("10.0.0.6", 5001)
        assert t.request.headers["Authorization"] == CREDS
        assert not auth.realms.hosts  # the configured hosts are the pin
        refused = learn(router, auth, "http://10.0.0.7:5001/token")
        assert refused.response.status_code == 502 and "(10.0.0.6)" in error(refused)["message"]
        assert asked == []  # listed hosts and IP addresses need no DNS


def blob_redirect(router, redirects, location: str) -> str:
    f = reverse_flow("GET", "/v2/a/b/blobs/sha256:" + "a" * 64, upstream=UP)
    router.requestheaders(f)
    respond(f, 307, {"Location": location})
    redirects.responseheaders(f)
    signed = f.response.headers["Location"]
    assert signed.startswith(M + "/_regmirror/redirect?")
    return signed[len(M) :]


async def follow(router, redirects, path: str, method: str = "GET"):
    g = reverse_flow(method, path, upstream=UP, headers={"Authorization": "Bearer t"})
    router.requestheaders(g)
    await redirects.requestheaders(g)
    return g


@pytest.mark.parametrize(
    "location,dns",
    [("http://10.0.0.7:9000/bucket/blob", {}),
     ("http://169.254.169.254/latest/meta-data/iam/", {}),
     ("http://[fe80::1]/x", {}),
     ("https://cdn.evil.example/blob", {"cdn.evil.example": ["127.0.0.1"]}),
     ("https://gone.example/blob", {})],
)  # fmt: skip
async def test_redirects_inside_are_refused(monkeypatch, location, dns, caplog):
    fake_dns(monkeypatch, dns)
    router, _, redirects = addons()
    with taddons.context(router, redirects, UpstreamConnections()):
        path = blob_redirect(router, redirects, location)
        for method in ("GET", "HEAD"):
            g = await follow(router, redirects, path, method)
            assert g.response.status_code == 502
            body = g.response.content if method == "GET" else b""
            assert body == b"" or json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
            assert g.request.host == "registry.example"  # never re-routed to the target
        assert "redirect of registry.example to" in caplog.text and "refused" in caplog.text


async def test_redirects_to_listed_hosts_the_registry_itself_and_the_internet(monkeypatch):
    asked = fake_dns(monkeypatch, {"cdn.example": ["104.16.0.1", "2606:4700::1"]})
    router, _, redirects = addons(redirect_hosts=("10.0.0.7",))
    with taddons.context(router, redirects, UpstreamConnections()):
        for location, host in [
            ("http://10.0.0.7:9000/bucket/blob", "10.0.0.7"),
            ("https://registry.example:8443/storage/blob", "registry.example"),
            ("https://cdn.example/blob?X-Amz-Signature=s", "cdn.example"),
        ]:
            g = await follow(router, redirects, blob_redirect(router, redirects, location))
            assert g.response is None
            assert g.request.host == host and "Authorization" not in g.request.headers
        assert asked == ["cdn.example"]


async def test_a_redirect_is_judged_by_the_registry_that_sent_it(monkeypatch):
    """The registry is part of the signature: a target signed for one registry is not
    followed under another registry's redirect_hosts."""
    fake_dns(monkeypatch, {})
    router, _, redirects = addons()
    router.config.registries["lab.example"] = Registry(
        "lab.example", parse_upstream("http://10.0.0.5:5000", []), redirect_hosts=("10.0.0.7",)
    )
    with taddons.context(router, redirects, UpstreamConnections()):
        path = blob_redirect(router, redirects, "http://10.0.0.7:9000/bucket/blob")
        assert "r=registry.example" in path
        relabelled = await follow(
            router, redirects, path.replace("registry.example", "lab.example")
        )
        assert relabelled.response.status_code == 403  # bad signature
        refused = await follow(router, redirects, path)
        assert refused.response.status_code == 502


async def test_resolution_does_not_block_the_event_loop(monkeypatch):
    def slow_getaddrinfo(host, port, *args, **kwargs):
        time.sleep(0.3)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        assert await outbound.resolve("slow.example", timeout=5) == ["192.0.2.1"]
        assert ticks >= 10  # the loop went on while the lookup ran in a thread
        assert await outbound.resolve("slow.example", timeout=0.05) == []  # gave up in time
    finally:
        task.cancel()


async def test_resolve_real_names():
    assert "127.0.0.1" in await outbound.resolve("localhost", timeout=5)
    assert await outbound.resolve("no-such-host.invalid", timeout=5) == []
    assert await outbound.resolve("a..b", timeout=5) == []  # not even a name: no exception

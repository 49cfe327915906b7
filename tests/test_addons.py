"""The order of mirror_addons(): each pair in ORDER, swapped, breaks what the test of that
pair shows; in the mirror's order it works."""

import base64
import json
import time

import pytest
from mitmproxy import flow
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import (
    HttpErrorHook,
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import taddons
from regmirror.addons import ORDER, mirror_addons
from regmirror.auth import client_tokens
from regmirror.auth.challenges import mirror_challenge
from regmirror.auth.client_auth import ClientAuth, ClientTokens
from regmirror.auth.token_proxy import TokenAuth
from regmirror.cache.addon import Cache
from regmirror.cache.data_plane import DataPlane
from regmirror.cache.heads import CachedHeads
from regmirror.observe.activity import Activity
from regmirror.observe.metrics import Metrics
from regmirror.observe.status import StatusEndpoints
from regmirror.observe.views import Views
from regmirror.routing.router import Router
from regmirror.transport.streaming import Streaming

from tests.flowutil import respond, reverse_flow
from tests.test_data_plane import cached

TOKEN = "s" * 20
CONFIG = f"""
[registries."docker.io"]
username = "mirror-bot"
password = "pw"
[auth]
tokens = ["{TOKEN}"]
"""
HUB_CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def of(addons, kind):
    return next(a for a in addons if isinstance(a, kind))


def swapped(addons, first, second):
    i, j = addons.index(of(addons, first)), addons.index(of(addons, second))
    addons[i], addons[j] = addons[j], addons[i]
    return addons


async def status_before_router(tctx, addons) -> bool:
    f = reverse_flow("GET", "/_regmirror/healthz")
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    return f.response is not None and f.response.status_code == 200


async def router_before_client_auth(tctx, addons) -> bool:
    f = reverse_flow("GET", "/v2/library/x/manifests/1")
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    return f.response is not None and f.response.status_code == 401


async def client_auth_before_token_auth(tctx, addons) -> bool:
    proxy = of(addons, TokenAuth)
    proxy.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    f = reverse_flow(
        "GET", "/v2/auth?scope=repository:library/x:pull",
        headers={"Authorization": basic("ci", TOKEN)},
    )  # fmt: skip
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    return f.response is None and f.request.headers.get("Authorization") == basic(
        "mirror-bot", "pw"
    )


async def token_auth_before_client_tokens(tctx, addons) -> bool:
    proxy = of(addons, TokenAuth)
    proxy.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    f = reverse_flow(
        "GET", "/v2/auth?scope=repository:library/x:pull",
        headers={"Authorization": basic("ci", TOKEN)},
    )  # fmt: skip
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    body = b'{"token": "T", "expires_in": 300, "refresh_token": "R"}'
    respond(f, 200, {"Content-Type": "application/json"}, body)
    await tctx.master.addons.trigger_event(HttpResponseHook(f))
    answer = json.loads(f.response.content)
    key = of(addons, Router).signer.key
    claims = client_tokens.open_token(key, answer["token"], time.time())
    # the client's token says the upstream token came with the route's credentials
    return "refresh_token" not in answer and claims is not None and claims.provenance == "route"


async def token_auth_before_metrics(tctx, addons) -> bool:
    proxy = of(addons, TokenAuth)
    proxy.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    form = b"grant_type=password&scope=%FF"
    f = reverse_flow(
        "POST", "/v2/auth", content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    tctx.options.update(regmirror_config="")  # no client auth: the OAuth2 form is served
    for hook in (HttpRequestHeadersHook, HttpRequestHook):
        await tctx.master.addons.trigger_event(hook(f))
    await tctx.master.addons.trigger_event(HttpResponseHeadersHook(f))
    return f.response.status_code == 400 and f not in of(addons, Metrics).sent_upstream


async def streaming_before_cache(tctx, addons) -> bool:
    tctx.options.update(regmirror_config="")
    f = reverse_flow("GET", "/v2/library/x/blobs/sha256:" + "a" * 64)
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    respond(f, 200, {"Content-Type": "application/octet-stream"}, b"x" * 10)
    await tctx.master.addons.trigger_event(HttpResponseHeadersHook(f))
    return callable(f.response.stream)  # the cache's verifying tee, not a plain True


async def cache_before_data_plane(tctx, addons) -> bool:
    tctx.options.update(regmirror_config="", regmirror_blob_redirect_min="1")
    cache, data_plane = of(addons, Cache), of(addons, DataPlane)
    digest = cached(cache, b"layer")
    cache.files = type("Files", (), {"url": lambda self, d, t: "http://127.0.0.1:9/x"})()
    data_plane.server = type("Server", (), {"port": 5001})()
    f = reverse_flow("GET", f"/v2/library/x/blobs/{digest}")
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    return f.response is not None and f.response.status_code == 307


async def cache_before_cached_heads(tctx, addons) -> bool:
    tctx.options.update(regmirror_config="")
    cache = of(addons, Cache)
    digest = cached(cache, b"layer")
    cache.files = type("Files", (), {"url": lambda self, d, t: "http://127.0.0.1:9/x"})()
    f = reverse_flow("HEAD", f"/v2/library/x/blobs/{digest}")
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    return f.response is not None and f.response.headers.get("Docker-Content-Digest") == digest


async def cache_before_activity(tctx, addons) -> bool:
    tctx.options.update(regmirror_config="")
    f = reverse_flow("GET", "/v2/library/x/blobs/sha256:" + "a" * 64)
    await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    respond(f, 200, {"Content-Type": "application/octet-stream", "Content-Length": "10"})
    await tctx.master.addons.trigger_event(HttpResponseHeadersHook(f))
    f.error = flow.Error("Server disconnected.")  # the upstream went away mid-body
    await tctx.master.addons.trigger_event(HttpErrorHook(f))
    return [e.kind for e in of(addons, Activity).recent] == ["fill failed"]


SCENARIOS = {
    (StatusEndpoints, Router): status_before_router,
    (Router, ClientAuth): router_before_client_auth,
    (ClientAuth, TokenAuth): client_auth_before_token_auth,
    (TokenAuth, ClientTokens): token_auth_before_client_tokens,
    (TokenAuth, Metrics): token_auth_before_metrics,
    (Streaming, Cache): streaming_before_cache,
    (Cache, DataPlane): cache_before_data_plane,
    (Cache, CachedHeads): cache_before_cached_heads,
    (Cache, Activity): cache_before_activity,
}


def test_the_mirrors_order_keeps_every_pair():
    addons = mirror_addons()
    kinds = [type(a) for a in addons]
    for first, second, why in ORDER:
        assert kinds.index(first) < kinds.index(second), why
    assert set(SCENARIOS) == {(first, second) for first, second, _ in ORDER}


@pytest.mark.parametrize("pair", list(SCENARIOS), ids=lambda p: f"{p[0].__name__}<{p[1].__name__}")
@pytest.mark.parametrize("swap", [False, True], ids=["in order", "swapped"])
async def test_each_pair_matters(pair, swap, tmp_path):
    config = tmp_path / "mirror.toml"
    config.write_text(CONFIG)
    addons = mirror_addons()
    if swap:
        swapped(addons, *pair)
    try:
        with taddons.context(Proxyserver(), *addons) as tctx:
            tctx.options.update(regmirror_config=str(config), regmirror_cache=str(tmp_path / "c"))
            works = await SCENARIOS[pair](tctx, addons)
    finally:
        of(addons, Views).done()  # the content views are global
    assert works is not swap

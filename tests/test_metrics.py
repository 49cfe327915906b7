import pytest
from mitmproxy import flow
from mitmproxy.test import taddons
from regmirror.observe.metrics import Metrics, parse_ratelimit, served_bytes
from regmirror.record import outcome
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow

HUB = "https://registry-1.docker.io"
D = "sha256:" + "e" * 64


def test_parse_ratelimit():
    assert parse_ratelimit("76;w=21600") == 76
    assert parse_ratelimit(" 100 ") == 100
    assert parse_ratelimit("") is None
    assert parse_ratelimit("many") is None


def test_served_bytes():
    resp = respond(reverse_flow(), 200, {}, b"12345").response
    assert served_bytes("GET", resp) == 5
    assert served_bytes("HEAD", resp) == 0
    resp.stream, resp.content = True, None
    resp.headers["Content-Length"] = "27100000"
    assert served_bytes("GET", resp) == 27_100_000


def cycle(router, metrics, method, path, status, headers=None, body=b"", length=None):
    """A flow through the hooks as mitmproxy runs them, answered by the upstream."""
    f = reverse_flow(method, path)
    router.requestheaders(f)
    metrics.request(f)
    f.request.timestamp_end = f.request.timestamp_start + 0.001
    respond(f, status, headers, body)
    f.response.timestamp_start = f.request.timestamp_end + 0.2
    if length is not None:  # streamed: no content, the size in the header
        f.response.stream, f.response.content = True, None
        f.response.headers["Content-Length"] = str(length)
    metrics.responseheaders(f)
    metrics.response(f)
    return f


def test_counters_move():
    router, metrics = Router(), Metrics()
    value = metrics.registry.get_sample_value
    with taddons.context(router, metrics):
        cycle(router, metrics, "GET", "/v2/auth?scope=repository:nginx:pull", 200, body=b"{}")
        cycle(
            router,
            metrics,
            "GET",
            "/v2/nginx/manifests/1",
            200,
            {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"},
            b"x" * 100,
        )
        cycle(router, metrics, "GET", f"/v2/nginx/blobs/{D}", 200, length=27_100_000)
        cycle(router, metrics, "GET", "/v2/nginx/manifests/2", 429)
        rejected = reverse_flow("PUT", "/v2/nginx/manifests/1")
        router.requestheaders(rejected)
        metrics.request(rejected)
        metrics.responseheaders(rejected)
        metrics.response(rejected)
        failed = reverse_flow("GET", f"/v2/nginx/blobs/{D}")
        router.requestheaders(failed)
        failed.error = flow.Error("connection reset")
        metrics.error(failed)

    def requests(op, status):
        return value("regmirror_requests_total", {"route": HUB, "operation": op, "status": status})

    assert requests("token", "200") == 1
    assert requests("manifest", "200") == 1
    assert requests("manifest", "429") == 1
    assert requests("blob", "200") == 1
    assert requests("blob", "error") == 1
    assert requests("manifest", "405") == 1  # the PUT the router refused
    by_router = {"operation": "manifest", "by": "router"}
    assert value("regmirror_answered_by_mirror_total", by_router) == 1
    assert value("regmirror_token_fetches_total", {"route": HUB, "status": "200"}) == 1
    served = {"route": HUB, "operation": "blob", "source": "upstream"}
    assert value("regmirror_served_bytes_total", served) == 27_100_000
    manifests = served | {"operation": "manifest"}
    assert value("regmirror_served_bytes_total", manifests) == 100
    refusal = len(rejected.response.content)  # the 405 the router answered counts too
    assert value("regmirror_served_bytes_total", manifests | {"source": "mirror"}) == refusal
    assert value("regmirror_upstream_throttled_total", {"route": HUB}) == 1
    assert value("regmirror_upstream_ratelimit_remaining", {"route": HUB}) == 76
    assert value("regmirror_upstream_ratelimit_limit", {"route": HUB}) == 100
    # answered by the mirror itself (the refused PUT): no upstream latency
    latency = {"route": HUB, "operation": "manifest"}
    assert value("regmirror_upstream_latency_seconds_count", latency) == 2
    assert value("regmirror_upstream_latency_seconds_bucket", latency | {"le": "0.25"}) == 2
    assert value("regmirror_upstream_latency_seconds_bucket", latency | {"le": "0.1"}) == 0


@pytest.mark.parametrize("result", ["hit", "stale"])
def test_answers_from_the_cache_are_counted_as_its_bytes_and_never_as_upstream(result):
    router, metrics = Router(), Metrics()
    value = metrics.registry.get_sample_value
    with taddons.context(router, metrics):
        f = reverse_flow("GET", f"/v2/nginx/blobs/{D}")
        router.requestheaders(f)
        outcome(f)["cache"] = result  # the cache routed it to its file server
        metrics.request(f)
        respond(f, 200, {}, b"x" * 10)
        metrics.responseheaders(f)
        metrics.response(f)
    served = {"route": HUB, "operation": "blob"}
    assert value("regmirror_served_bytes_total", served | {"source": "cache"}) == 10
    assert value("regmirror_served_bytes_total", served | {"source": "upstream"}) is None
    assert value("regmirror_upstream_latency_seconds_count", served) is None


def test_flows_of_other_modes_are_not_counted():
    from mitmproxy.test import tflow

    metrics = Metrics()
    with taddons.context(metrics):
        f = tflow.tflow(resp=True)
        metrics.request(f)
        metrics.responseheaders(f)
        metrics.response(f)
    assert "regmirror_requests_total" not in {
        s.name for m in metrics.registry.collect() for s in m.samples
    }


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from mitmproxy import http

from tests.strategies import header_text, mitm_text, props


@props(200)
@given(header_text)
def test_prop_parse_ratelimit_never_raises(value):
    n = parse_ratelimit(value)
    assert n is None or isinstance(n, float)


@props(100)
@given(st.integers(0, 10**12), st.integers(1, 10**6), st.sampled_from(["", " ", "  "]))
def test_prop_parse_ratelimit_reads_docker_hubs_header(n, window, space):
    assert parse_ratelimit(f"{space}{n}{space};w={window}") == n
    assert parse_ratelimit(f"{n}") == n


@props(100)
@given(
    st.sampled_from(["GET", "HEAD"]),
    st.one_of(st.sampled_from(["", "0", "12", "²", "١٢", "-1", " 5"]), mitm_text),
    st.binary(max_size=20),
)
@example("GET", "²", b"")  # a Unicode digit that int() refuses
def test_prop_served_bytes_is_a_size(method, length, body):
    resp = http.Response.make(200, body)
    resp.headers["Content-Length"] = length  # after the body, which sets its own
    n = served_bytes(method, resp)
    if method == "HEAD":
        assert n == 0
    else:
        assert n == (int(length) if length.isascii() and length.isdigit() else len(body))

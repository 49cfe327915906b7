import json

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.test import taddons, tflow
from regmirror.record import KEY
from regmirror.transport.connection_limits import ConnectionLimits, OpenConnections

from tests.flowutil import reverse_flow

A, B = "192.0.2.1", "192.0.2.2"


def test_oldest_connections_are_served():
    conns = OpenConnections()
    for conn_id in ("a1", "a2", "a3"):
        conns.opened(A, conn_id)
    conns.opened(B, "b1")
    assert [conns.served(A, c, 2) for c in ("a1", "a2", "a3")] == [True, True, False]
    assert conns.served(B, "b1", 1)  # counted per address
    assert conns.served(A, "a3", 0) and conns.served(A, "a3", 3)  # 0: no limit
    assert conns.count(A) == 3
    conns.closed(A, "a2")  # an older one closes: the third moves up
    assert conns.served(A, "a3", 2)
    conns.opened(A, "a4")
    assert not conns.served(A, "a4", 2)


def test_closing_forgets_and_unknown_connections_are_served():
    conns = OpenConnections()
    conns.opened(A, "a1")
    conns.closed(A, "a1")
    conns.closed(A, "a1")
    conns.closed(B, "never-seen")
    assert conns.by_address == {}
    conns.opened(A, "a2")
    assert conns.served(A, "opened-before-load", 1)


def client(address: str) -> connection.Client:
    c = tflow.tclient_conn()
    c.peername = (address, 40000)
    return c


def test_option_is_validated():
    limits = ConnectionLimits()
    with taddons.context(limits) as tctx:
        assert tctx.options.regmirror_max_connections_per_client == 256
        with pytest.raises(exceptions.OptionsError, match="regmirror_max_connections_per_client"):
            tctx.configure(limits, regmirror_max_connections_per_client=-1)
        tctx.configure(limits, regmirror_max_connections_per_client=0)


def test_the_connection_over_the_limit_gets_429():
    limits = ConnectionLimits()
    with taddons.context(limits) as tctx:
        tctx.configure(limits, regmirror_max_connections_per_client=2)
        first, second, third, other = client(A), client(A), client(A), client(B)
        for c in (first, second, third, other):
            limits.client_connected(c)

        def request(c: connection.Client, method: str = "GET"):
            f = reverse_flow(method, "/v2/library/nginx/manifests/1")
            f.client_conn = c
            limits.requestheaders(f)
            return f

        assert request(second).response is None
        assert request(other).response is None
        refused = request(third)
        resp = refused.response
        assert (resp.status_code, resp.reason) == (429, "Too Many Requests")
        assert resp.headers["Retry-After"] == "5"
        assert resp.headers["Connection"] == "close"
        err = json.loads(resp.content)["errors"][0]
        assert err["code"] == "TOOMANYREQUESTS"
        assert err["message"] == f"3 connections open from {A}; at most 2 are served at once"
        assert refused.metadata[KEY]["outcome"]["answered_by"] == "limits"
        assert refused.request.host == "registry-1.docker.io"  # never routed upstream
        head = request(third, "HEAD").response
        assert head.status_code == 429 and head.content == b""
        limits.client_disconnected(first)
        assert request(third).response is None
        tctx.configure(limits, regmirror_max_connections_per_client=1)
        assert request(third).response.status_code == 429
        tctx.configure(limits, regmirror_max_connections_per_client=0)
        assert request(third).response is None


def test_answered_flows_are_left_alone():
    limits = ConnectionLimits()
    with taddons.context(limits) as tctx:
        tctx.configure(limits, regmirror_max_connections_per_client=1)
        for _ in range(2):
            c = client(A)
            limits.client_connected(c)
        f = reverse_flow("GET", "/_regmirror/healthz")
        f.client_conn = c
        f.response = tflow.tresp()
        limits.requestheaders(f)
        assert f.response.status_code == 200

import asyncio

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow
from regmirror.transport import upstream
from regmirror.transport.upstream import UpstreamConnections

pytestmark = pytest.mark.real_connect  # the connect check itself is under test


def test_required_settings_are_turned_on():
    u = UpstreamConnections()
    with taddons.context(Proxyserver(), u) as tctx:
        tctx.configure(u)  # as at start-up
        assert tctx.options.keep_host_header is True
        assert tctx.options.connection_strategy == "lazy"
        assert tctx.options.stream_large_bodies == "1m"
        tctx.options.update(keep_host_header=False, stream_large_bodies="5m")
        assert tctx.options.keep_host_header is True
        assert tctx.options.stream_large_bodies == "5m"  # the user's own size is kept
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(u, regmirror_upstream_timeout=0)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(u, regmirror_response_timeout=-1)


def hook_data(host: str, port: int) -> server_hooks.ServerConnectionHookData:
    server = connection.Server(address=(host, port))
    return server_hooks.ServerConnectionHookData(server, tflow.tclient_conn())


async def test_sni_and_reachability(monkeypatch):
    u = UpstreamConnections()
    opened = []

    async def fake_open(host, port):
        opened.append((host, port))

        class W:
            def close(self):
                pass

        return None, W()

    monkeypatch.setattr(asyncio, "open_connection", fake_open)
    with taddons.context(u):
        d = hook_data("registry-1.docker.io", 443)
        d.server.sni = "mirror.example"
        await u.server_connect(d)
        assert d.server.sni == "registry-1.docker.io"
        assert d.server.error is None
        d = hook_data("127.0.0.1", 5000)
        await u.server_connect(d)
        assert d.server.sni is None
        await u.server_connect(hook_data("registry-1.docker.io", 443))
        assert opened == [("registry-1.docker.io", 443), ("127.0.0.1", 5000)]  # cached


async def test_connect_timeout_and_refusal(monkeypatch):
    u = UpstreamConnections()

    async def never(host, port):
        await asyncio.sleep(60)

    with taddons.context(u) as tctx:
        tctx.configure(u, regmirror_upstream_timeout=1)
        d = hook_data("127.0.0.1", 9)
        await u.server_connect(d)  # nothing listens on the discard port
        assert d.server.error.startswith("cannot connect to 127.0.0.1:9")
        monkeypatch.setattr(upstream.asyncio, "open_connection", never)
        d = hook_data("blackhole.example", 443)
        await u.server_connect(d)
        assert d.server.error == "connection to blackhole.example:443 timed out after 1 s"

import asyncio
import json

from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server
from mitmproxy.proxy.layers.http import _http1, _http2
from mitmproxy.test import taddons
from regmirror.transport import patches
from regmirror.transport.patches import LargeReads, Patches
from regmirror.transport.streaming import Streaming


def test_installed_when_running_and_restored_when_done():
    originals = (_http1.make_error_response, _http2.format_error,
                 server.ConnectionHandler.handle_connection)  # fmt: skip
    p = Patches()
    with taddons.context(p):
        p.running()
        p.running()  # once only
        assert len(p.installed) == len(patches.PATCHES)
        raw = _http1.make_error_response(502, "upstream gone")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 502 Bad Gateway") and b"application/json" in head
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert json.loads(_http2.format_error(502, "x"))["errors"][0]["code"] == "UNAVAILABLE"
        assert server.ConnectionHandler.handle_connection is not originals[2]
        p.done()
    assert (_http1.make_error_response, _http2.format_error,
            server.ConnectionHandler.handle_connection) == originals  # fmt: skip


def test_a_patch_whose_target_is_gone_is_named_and_skipped(monkeypatch, caplog):
    monkeypatch.delattr(_http2, "format_error")
    p = Patches()
    with taddons.context(p):
        p.install()
        assert [x.name for x, _ in p.installed] == [
            "error pages (HTTP/1)",
            "large reads",
            "hook dispatch",
        ]
        p.restore()
    assert "patch 'error pages (HTTP/2)' not installed: _http2.format_error is gone" in (
        caplog.text.replace("mitmproxy.proxy.layers.http.", "")
    )


def test_another_mitmproxy_version_is_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(patches.mitmproxy_version, "VERSION", "12.0.0")
    with taddons.context(Patches()):
        pass
    assert "regmirror patches mitmproxy 11.0.2 internals; this is mitmproxy 12.0.0" in caplog.text


async def test_large_reads_return_what_is_buffered_up_to_the_size():
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 300_000)
    large = LargeReads(reader, 1 << 20)
    assert len(await large.read(65535)) == 300_000  # mitmproxy asks for 64 KiB
    reader.feed_data(b"y" * 10)
    reader.feed_eof()
    assert await large.read(65535) == b"y" * 10
    assert await large.read(65535) == b""
    assert large.at_eof()  # everything else is the StreamReader's


async def test_connections_get_large_reads():
    s = Streaming()
    with taddons.context(Proxyserver(), s):
        reader = asyncio.StreamReader()

        class Transport:
            max_size = 256 * 1024

            def is_closing(self) -> bool:  # asked by StreamWriter.__del__
                return True

        class Writer(asyncio.StreamWriter):
            def __init__(self) -> None:
                self._transport = Transport()

        io = server.ConnectionIO(reader=reader, writer=Writer())
        seen = []

        async def original(self, connection):
            seen.append((self.transports[connection].reader, io.writer.transport.max_size))

        handler = type("Handler", (), {"transports": {"conn": io}})()
        await patches.large_reads(original)(handler, "conn")
        ((got_reader, max_size),) = seen
        assert isinstance(got_reader, LargeReads) and got_reader.size == 512 << 10
        assert max_size == 512 << 10

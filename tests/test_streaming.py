import asyncio

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server
from mitmproxy.test import taddons
from regmirror.transport import streaming
from regmirror.transport.streaming import LargeReads, Streaming


def test_read_size_option_and_install():
    s = Streaming()
    with taddons.context(Proxyserver(), s) as tctx:
        assert tctx.options.regmirror_read_size == 512 << 10
        assert server.ConnectionHandler.handle_connection.regmirror_large_reads
        wrapped = server.ConnectionHandler.handle_connection
        streaming.install_large_reads()  # idempotent
        assert server.ConnectionHandler.handle_connection is wrapped
        for bad in (-1, 17 << 20):
            with pytest.raises(exceptions.OptionsError):
                tctx.configure(s, regmirror_read_size=bad)
        tctx.configure(s, regmirror_read_size=0)
        assert streaming.read_size() == 0


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
        await _wrapper_around(original)(handler, "conn")
        ((got_reader, max_size),) = seen
        assert isinstance(got_reader, LargeReads) and got_reader.size == 512 << 10
        assert max_size == 512 << 10


def _wrapper_around(original):
    """What install_large_reads() makes of a stand-in for mitmproxy's handle_connection."""
    saved = server.ConnectionHandler.handle_connection
    try:
        server.ConnectionHandler.handle_connection = original
        streaming.install_large_reads()
        return server.ConnectionHandler.handle_connection
    finally:
        server.ConnectionHandler.handle_connection = saved

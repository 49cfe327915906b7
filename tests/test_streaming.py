import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons
from regmirror.transport import patches
from regmirror.transport.streaming import Streaming


def test_read_size_option():
    s = Streaming()
    with taddons.context(Proxyserver(), s) as tctx:
        assert tctx.options.regmirror_read_size == 512 << 10
        for bad in (-1, 17 << 20):
            with pytest.raises(exceptions.OptionsError):
                tctx.configure(s, regmirror_read_size=bad)
        tctx.configure(s, regmirror_read_size=0)
        assert patches.read_size() == 0

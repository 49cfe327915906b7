import pytest
from mitmproxy.addons.next_layer import NextLayer as MitmproxyNextLayer
from mitmproxy.proxy import commands, context, events, layer, layers
from mitmproxy.proxy.layer import NextLayerHook
from mitmproxy.proxy.layers import modes
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow
from regmirror.transport.refuse_tls import Refused, RefuseTls

REVERSE = "reverse:http://127.0.0.1:5000"
# The first bytes of a TLS 1.2/1.3 ClientHello record, and of a plain HTTP request.
CLIENT_HELLO = bytes.fromhex("16030102000100") + b"\x01\xfc\x03\x03" + bytes(32)
HTTP = b"GET /v2/ HTTP/1.1\r\nHost: mirror.test:5000\r\n\r\n"


def next_layer(tctx: taddons.context, mode: str, data: bytes, tls: bool = False) -> layer.NextLayer:
    """A connection's NextLayer as mitmproxy asks its addons about it, after `data` arrived."""
    client = tflow.tclient_conn()
    client.proxy_mode = ProxyMode.parse(mode)
    client.tls = tls
    ctx = context.Context(client, tctx.options)
    if mode.startswith("reverse:"):
        modes.ReverseProxy(ctx)  # the layer below, which asks for the next one
    nl = layer.NextLayer(ctx)
    if data:
        nl.events.append(events.DataReceived(client, data))
    return nl


@pytest.mark.parametrize(
    "tls_option, mode, data, client_tls, refused",
    [
        (False, REVERSE, CLIENT_HELLO, False, True),
        (True, REVERSE, CLIENT_HELLO, False, False),  # the default: TLS is answered
        (False, REVERSE, HTTP, False, False),  # plain HTTP is what the mirror wants
        (False, REVERSE, CLIENT_HELLO[:2], False, False),  # too short to tell yet
        (False, REVERSE, b"", False, False),
        (False, "regular", CLIENT_HELLO, False, False),  # only the mirror's listener
        (False, REVERSE, CLIENT_HELLO, True, False),  # inside a TLS layer already
    ],
)
def test_decision(tls_option, mode, data, client_tls, refused):
    addon = RefuseTls()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, regmirror_tls=tls_option)
        nl = next_layer(tctx, mode, data, client_tls)
        addon.next_layer(nl)
        assert isinstance(nl.layer, Refused) is refused
        if not refused:
            assert nl.layer is None  # left to mitmproxy


def test_a_layer_chosen_before_is_kept():
    addon = RefuseTls()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, regmirror_tls=False)
        nl = next_layer(tctx, REVERSE, CLIENT_HELLO)
        chosen = layers.TCPLayer(nl.context)
        nl.layer = chosen
        addon.next_layer(nl)
        assert nl.layer is chosen


@pytest.mark.parametrize(
    "tls_option, data, expected",
    [
        (False, CLIENT_HELLO, Refused),
        (True, CLIENT_HELLO, layers.ClientTLSLayer),
        (False, HTTP, layers.HttpLayer),
        (True, HTTP, layers.HttpLayer),
    ],
)
def test_before_mitmproxys_own_choice(tls_option, data, expected):
    """As in mitmdump, where `-s` scripts see next_layer before mitmproxy's NextLayer addon."""
    addon = RefuseTls()
    with taddons.context(addon, MitmproxyNextLayer()) as tctx:
        tctx.configure(addon, regmirror_tls=tls_option)
        nl = next_layer(tctx, REVERSE, data)
        tctx.master.addons.trigger(NextLayerHook(nl))
        assert isinstance(nl.layer, expected)


def test_refused_closes_the_connection_without_an_answer():
    with taddons.context() as tctx:
        client = tflow.tclient_conn()
        refused = Refused(context.Context(client, tctx.options))
        cmds = list(refused.handle_event(events.Start()))
    assert [type(c) for c in cmds] == [commands.Log, commands.CloseConnection]
    assert cmds[1].connection is client
    assert not any(isinstance(c, commands.SendData) for c in cmds)

"""Optionally refuse TLS on the mirror's port.

mitmproxy answers TLS and plain HTTP on one port. skopeo and podman with `insecure=true`
try HTTPS first, so they speak TLS to a mirror meant for plain HTTP, and pay for it (about
0.7 s of their CPU per GiB, see BENCHMARKS.md). With TLS refused, their handshake fails and
they fall back to HTTP at once.
"""

from mitmproxy import ctx
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.mode_specs import ReverseMode


class Refused(layer.Layer):
    """A connection closed before anything is answered."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.Log("TLS refused (regmirror_tls=false)")
            yield commands.CloseConnection(self.context.client)


class RefuseTls:
    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_tls",
            bool,
            True,
            """
            Answer TLS on the mirror's port (with mitmproxy's certificate, or --certs).
            false: a plain-HTTP mirror; TLS handshakes are refused, so clients that try HTTPS
            first (skopeo, podman with insecure=true) fall back to HTTP right away.
            """,
        )

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if nextlayer.layer or ctx.options.regmirror_tls:
            return
        context = nextlayer.context
        if not isinstance(context.client.proxy_mode, ReverseMode) or context.client.tls:
            return
        if starts_like_tls_record(nextlayer.data_client()):
            nextlayer.layer = Refused(context)

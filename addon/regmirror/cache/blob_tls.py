"""TLS for the data plane, with the certificates the mirror's own port presents: mitmproxy's
certificate store (tlsconfig) gives the certificate for a name, `--certs` ones included, else
one signed by mitmproxy's CA. The name is the client's SNI, or without one (a client that
connects to an IP address) the address it connected to, as mitmproxy chooses.

Python's ssl loads certificates only from files: each is written to an anonymous memory file
(memfd), so no private key touches the disk. Contexts are kept per name, a bounded number,
since the SNI is the client's to choose.
"""

import ipaddress
import os
import ssl
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs

KEPT = 64  # contexts kept, by name


def general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.encode("idna").decode())


def _memory_file(data: bytes) -> int:
    fd = os.memfd_create("regmirror-tls", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


def server_context(entry: certs.CertStoreEntry) -> ssl.SSLContext:
    """An HTTP/1.1 server context presenting `entry` (its certificate, chain and key)."""
    chain = [entry.cert, *(c for c in entry.chain_certs if c != entry.cert)]
    key = entry.privatekey.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["http/1.1"])
    cert_fd, key_fd = _memory_file(b"".join(c.to_pem() for c in chain)), _memory_file(key)
    try:
        context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
    finally:
        os.close(cert_fd)
        os.close(key_fd)
    return context


class Certificates:
    """Server contexts by name, from the certificate store that `store()` returns now (it
    changes when mitmproxy's confdir or --certs do)."""

    def __init__(self, store: Callable[[], certs.CertStore]) -> None:
        self.store = store
        self._of: certs.CertStore | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context(self, name: str) -> ssl.SSLContext:
        """The context for a connection to `name` (the local address it reached); a client's
        SNI picks its own in the handshake."""
        store = self.store()
        if store is not self._of:
            self._of, self._contexts = store, {}
        if name not in self._contexts:
            if len(self._contexts) >= KEPT:
                del self._contexts[next(iter(self._contexts))]
            context = server_context(store.get_cert(name, [general_name(name)]))
            context.sni_callback = self._sni
            self._contexts[name] = context
        return self._contexts[name]

    def _sni(self, conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
        if not server_name:
            return None
        try:
            conn.context = self.context(server_name)
        except (ValueError, ssl.SSLError):  # a name no certificate can carry
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

"""Certificates for TLS registries in tests and benchmarks."""

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(
    key: ec.EllipticCurvePrivateKey, common_name: str, ip: str | None = None
) -> x509.Certificate:
    """A self-signed CA certificate for `key`; with `ip`, also valid for that address."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256())


def self_signed(cert: Path, key: Path) -> None:
    """PEM files of a self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    private = ec.generate_private_key(ec.SECP256R1())
    cert.write_bytes(
        certificate(private, "127.0.0.1", "127.0.0.1").public_bytes(serialization.Encoding.PEM)
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

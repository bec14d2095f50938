"""Throwaway certificates for the TLS tests (not an application: the tests import it by path).

Why it exists: the unit and end-to-end TLS tests both need a self-signed server certificate
for 127.0.0.1, and for client authentication a CA plus a client certificate it signed.
Generated with ``cryptography`` into a temporary directory; never checked in.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs"]


@dataclass(frozen=True)
class Certs:
    server_cert: Path  # self-signed, for 127.0.0.1 / localhost
    server_key: Path
    ca_cert: Path  # a CA that signed the client certificate
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # self-signed: not trusted by ca_cert
    other_client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key_path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_certs(directory: Path) -> Certs:
    """Write every certificate and key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = directory / "server.pem"
    server_key_path = _write(
        server,
        server_key,
        _cert("127.0.0.1", server_key, "127.0.0.1", server_key, ca=True, server=True),
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = directory / "ca.pem"
    _write(ca, ca_key, _cert("greenhorn test CA", ca_key, "greenhorn test CA", ca_key, ca=True))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = directory / "client.pem"
    client_key_path = _write(
        client, client_key, _cert("client", client_key, "greenhorn test CA", ca_key)
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = directory / "other.pem"
    other_key_path = _write(other, other_key, _cert("intruder", other_key, "intruder", other_key))
    return Certs(server, server_key_path, ca, client, client_key_path, other, other_key_path)

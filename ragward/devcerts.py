"""A throwaway certificate authority for the secured local services (dev and tests only).

:func:`make_pki` writes, with ``cryptography``, a CA and one server certificate
for ``localhost`` and ``127.0.0.1`` signed by it, as PEM files that both Kafka
(``ssl.keystore.type=PEM``) and Redis (``tls-cert-file``) read, and that clients
trust through the CA file. Keys are EC P-256, unencrypted, readable by the owner
only; the CA's own key is never written, so nothing else can be signed with it
later. A second call makes an unrelated CA: what a client that trusts the wrong
authority sees.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "ragward-broker"  # the server's subject CN: Kafka's principal User:CN=...


@dataclass(frozen=True)
class DevPki:
    ca_file: Path  # the CA certificate clients trust
    cert_file: Path  # the server certificate (leaf, then CA)
    key_file: Path  # its private key (PKCS#8)
    keystore_file: Path  # key + chain in one PEM: Kafka's file-based PEM key store

    @property
    def principal(self) -> str:
        """The principal a Kafka broker sees for this certificate on an mTLS listener."""
        return f"User:CN={SERVER_NAME}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def make_pki(directory: Path, *, days: int = 7) -> DevPki:
    """Write a fresh CA and a localhost server certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"ragward dev CA {os.urandom(4).hex()}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_NAME)).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # serverAuth for clients; clientAuth because the broker also dials its own
        # controller listener, which requires a client certificate
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    chain = server.public_bytes(pem) + ca_pem
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return DevPki(
        ca_file=_write(directory / "ca.pem", ca_pem),
        cert_file=_write(directory / "server.pem", chain),
        key_file=_write(directory / "server.key", key_pem),
        keystore_file=_write(directory / "server-keystore.pem", key_pem + chain),
    )

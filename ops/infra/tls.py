"""A certificate authority of the local stack's own, and one server certificate for every
local node, so the provisioned Kafka (a SASL_SSL listener beside the SASL_PLAINTEXT one) and
Cassandra (client encryption, optional) can be reached over TLS with host names checked.

Made once per state directory with ``cryptography``: ``ca.pem`` (the CA certificate that
clients trust, ``METERLY_KAFKA_SSL_CA_FILE`` / ``METERLY_CASSANDRA_SSL_CA_FILE``) and
``server.pem`` (the nodes' private key, then the certificate chain: the one PEM file both
Kafka's and Cassandra's PEM key stores read), mode 0600. The certificate names
``localhost`` and the loopback addresses the nodes listen on.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path
    #: The private key (PKCS#8, unencrypted) followed by the certificate and the CA's.
    server_pem: Path


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def ensure(directory: Path, addresses: list[str]) -> LocalTls:
    """The CA and server certificate under ``directory``, made on first use."""
    tls = LocalTls(directory / "ca.pem", directory / "server.pem")
    if tls.ca_file.exists() and tls.server_pem.exists():
        return tls
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Meterly local CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write(tls.server_pem, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
           + cert.public_bytes(pem) + ca.public_bytes(pem))
    _write(tls.ca_file, ca.public_bytes(pem))
    return tls

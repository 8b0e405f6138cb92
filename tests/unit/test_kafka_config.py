"""Every Kafka client Meterly runs starts from ``processors.kafka.config`` (librdkafka from
``client_config``, aiokafka from ``aiokafka_security``, Faust from ``faust_app``) and every
Cassandra session is opened with the settings' security, so connection security cannot be
missed by one of them; and each library gets the same security in its own words."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from processors.kafka.config import (
    ClientCredentialsTokens,
    aiokafka_security,
    client_config,
    faust_credentials,
    librdkafka_security,
)
from processors.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_clients_start_from_the_bootstrap_servers() -> None:
    assert client_config("a:9092,b:9092") == {"bootstrap.servers": "a:9092,b:9092"}


def test_no_client_is_configured_by_hand() -> None:
    by_hand = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("processors", "gateway", "storage", "ops")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.name != "config.py" and "bench" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if '"bootstrap.servers"' in line and "handed out: not a client" not in line
    ]
    assert by_hand == []



def _uses(pattern: str, top: tuple[str, ...] = ("processors", "gateway", "storage", "ops")
          ) -> list[tuple[str, str]]:
    return [
        (f"{path.relative_to(ROOT)}:{n}", line)
        for folder in top
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "bench" not in path.parts
        for n, line in _calls(path.read_text().splitlines(), pattern)
        if "def " not in line
    ]


def _calls(lines: list[str], pattern: str) -> list[tuple[int, str]]:
    """Each line holding ``pattern``, with the line after it, so that a call wrapped over
    two lines reads whole."""
    return [(n, line + " " + (lines[n] if n < len(lines) else ""))
            for n, line in enumerate(lines, 1) if pattern in line]


def test_every_cassandra_session_and_python_kafka_client_takes_the_security() -> None:
    sessions = [(where, line) for where, line in _uses("connect(")
                if "cassandra" in line.lower() and "cluster.connect" not in line]
    assert len(sessions) >= 8, sessions
    assert [w for w, line in sessions if "security=" not in line] == []
    consumers = _uses("AIOKafkaConsumer(") + _uses("AIOKafkaProducer(")
    calls = [(w, line) for w, line in consumers if "import" not in line]
    assert calls, "the dispatcher's consumer was not found"
    source = (ROOT / "processors/webhooks/dispatcher.py").read_text()
    assert source.count("**aiokafka_security(settings)") == len(calls)
    assert [w for w, line in _uses("faust.App(") if "faust_app.py" not in w] == []


def _cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meterly-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "client.pem", tmp / "client.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_sasl_ssl_scram_with_a_ca_and_a_client_certificate(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path)
    settings = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="meterly",
                        kafka_sasl_password="s3cret", kafka_ssl_ca_file=cert,
                        kafka_ssl_cert_file=cert, kafka_ssl_key_file=key)
    assert librdkafka_security(settings) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "meterly", "sasl.password": "s3cret",
        "ssl.ca.location": str(cert), "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key)}
    python = aiokafka_security(settings)
    assert {k: v for k, v in python.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "meterly", "sasl_plain_password": "s3cret"}
    context = python["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("meterly", "s3cret")


def test_managed_kafka_plain_over_tls_and_oauthbearer(tmp_path: Path) -> None:
    plain = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL",
                     kafka_sasl_mechanism="PLAIN", kafka_sasl_username="KEY",
                     kafka_sasl_password="SECRET")
    assert librdkafka_security(plain) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "PLAIN", "sasl.username": "KEY",
        "sasl.password": "SECRET"}
    assert isinstance(aiokafka_security(plain)["ssl_context"], ssl.SSLContext)
    oauth = Settings(home=tmp_path, kafka_security_protocol="SASL_SSL",
                     kafka_sasl_mechanism="OAUTHBEARER",
                     kafka_oauth_token_url="https://idp.example/token",
                     kafka_oauth_client_id="meterly", kafka_oauth_client_secret="cs",
                     kafka_oauth_scope="kafka")
    assert librdkafka_security(oauth) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "meterly", "sasl.oauthbearer.client.secret": "cs",
        "sasl.oauthbearer.scope": "kafka"}
    tokens = aiokafka_security(oauth)["sasl_oauth_token_provider"]
    assert isinstance(tokens, ClientCredentialsTokens)
    assert tokens.form == {"grant_type": "client_credentials", "client_id": "meterly",
                           "client_secret": "cs", "scope": "kafka"}
    assert isinstance(faust_credentials(oauth), faust.OAuthCredentials)
    tls_only = Settings(home=tmp_path, kafka_security_protocol="SSL")
    assert librdkafka_security(tls_only) == {"security.protocol": "ssl"}
    assert isinstance(faust_credentials(tls_only), faust.SSLCredentials)
    none = Settings(home=tmp_path)
    assert librdkafka_security(none) == {}
    assert aiokafka_security(none) == {}
    assert faust_credentials(none) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"kafka_security_protocol": "SASL_SSL"}, "needs METERLY_KAFKA_SASL_MECHANISM"),
     ({"kafka_sasl_mechanism": "PLAIN"}, "must be SASL_SSL or SASL_PLAINTEXT"),
     ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
       "kafka_sasl_username": "u"}, "METERLY_KAFKA_SASL_PASSWORD"),
     ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
      "METERLY_KAFKA_OAUTH_TOKEN_URL"),
     ({"kafka_ssl_cert_file": "/x.pem"}, "go together"),
     ({"cassandra_username": "u"}, "go together")],
)
def test_incomplete_security_settings_stop_the_process(
        tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(home=tmp_path, **changes)  # type: ignore[arg-type]


def test_cassandra_security(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path)
    settings = Settings(home=tmp_path, cassandra_username="meterly", cassandra_password="pw",
                        cassandra_ssl_ca_file=cert, cassandra_ssl_cert_file=cert,
                        cassandra_ssl_key_file=key)
    security = settings.cassandra_security
    provider = security.auth_provider()
    assert provider is not None
    assert (provider.username, provider.password) == ("meterly", "pw")
    context = security.ssl_context()
    assert context is not None
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1
    plain = Settings(home=tmp_path).cassandra_security
    assert plain.auth_provider() is None
    assert plain.ssl_context() is None

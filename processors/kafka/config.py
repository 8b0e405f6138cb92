"""What every Kafka client of Meterly is configured with: the bootstrap servers and the
connection's security (TLS, SASL PLAIN / SCRAM / OAUTHBEARER), from the process's
``METERLY_KAFKA_*`` settings, for each of the three client libraries:

- librdkafka (confluent-kafka producers, consumers, admin): ``client_config``;
- aiokafka (the webhook dispatcher's consumer): ``aiokafka_security``;
- Faust (the billing, admin and renderer workers): ``faust_credentials``.

``tests/unit/test_kafka_config.py`` fails if a client sets ``bootstrap.servers`` by hand,
and checks each mapping.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx
from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from processors.runtime.settings import Settings, get_settings


def client_config(bootstrap: str) -> dict[str, Any]:
    """The settings a librdkafka client starts from; callers add their own.

    Re-bootstrap (KIP-899, librdkafka's default ``metadata.recovery.strategy``) stays on.
    After a single broker restarted, it decommissioned the broker and a transactional
    commit then hung on it as a cached coordinator (confluentinc/librdkafka#5511, open as
    of librdkafka 2.16): ``processors.kafka.transactions.Watchdog`` exits such a worker so
    that it restarts. Turning re-bootstrap off ended that hang (0 of 5 runs stuck, against
    5 of 5), but left HTTP batches unanswered, a new key unseen by a gateway and no invoice
    after a frozen broker resumed (the kafka-frozen scenario, 2026-12-06), so it is not.
    """
    return {"bootstrap.servers": bootstrap, **librdkafka_security(get_settings())}


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """librdkafka's names for the connection security in ``settings`` (none for PLAINTEXT)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol.lower()}
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        config |= {"sasl.mechanism": mechanism, "sasl.oauthbearer.method": "oidc",
                   "sasl.oauthbearer.token.endpoint.url": settings.kafka_oauth_token_url,
                   "sasl.oauthbearer.client.id": settings.kafka_oauth_client_id,
                   "sasl.oauthbearer.client.secret": settings.kafka_oauth_client_secret}
        if settings.kafka_oauth_scope:
            config["sasl.oauthbearer.scope"] = settings.kafka_oauth_scope
    elif mechanism is not None:
        config |= {"sasl.mechanism": mechanism, "sasl.username": settings.kafka_sasl_username,
                   "sasl.password": settings.kafka_sasl_password}
    if settings.kafka_tls:
        if settings.kafka_ssl_ca_file:
            config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file and settings.kafka_ssl_key_file:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
            config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
            if settings.kafka_ssl_key_password:
                config["ssl.key.password"] = settings.kafka_ssl_key_password
    return config


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for Python clients (hostnames checked, as librdkafka does)."""
    if not settings.kafka_tls:
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None,
        certfile=str(settings.kafka_ssl_cert_file) if settings.kafka_ssl_cert_file else None,
        keyfile=str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None,
        password=settings.kafka_ssl_key_password)
    return context


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER tokens for aiokafka and Faust: the OAuth 2 client-credentials grant
    against ``METERLY_KAFKA_OAUTH_TOKEN_URL``, each token reused until a minute before it
    expires (librdkafka does the same itself with ``sasl.oauthbearer.method=oidc``)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_oauth_token_url
        self.url = settings.kafka_oauth_token_url
        self.form = {"grant_type": "client_credentials",
                     "client_id": settings.kafka_oauth_client_id or "",
                     "client_secret": settings.kafka_oauth_client_secret or "",
                     **({"scope": settings.kafka_oauth_scope}
                        if settings.kafka_oauth_scope else {})}
        self._token: str | None = None
        self._until = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._until:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(self.url, data=self.form)
            answer.raise_for_status()
            doc = answer.json()
            self._token = str(doc["access_token"])
            self._until = time.monotonic() + max(0.0, float(doc.get("expires_in", 300)) - 60)
        return self._token


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the connection security in ``settings``."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol,
                              "ssl_context": kafka_ssl_context(settings)}
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        config |= {"sasl_mechanism": mechanism,
                   "sasl_oauth_token_provider": ClientCredentialsTokens(settings)}
    elif mechanism is not None:
        config |= {"sasl_mechanism": mechanism,
                   "sasl_plain_username": settings.kafka_sasl_username,
                   "sasl_plain_password": settings.kafka_sasl_password}
    return config


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the connection security (None for PLAINTEXT)."""
    import faust  # the Faust workers only: importing it costs the others start-up time

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if settings.kafka_sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=ClientCredentialsTokens(settings),
                                      ssl_context=context)
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism,
                                 ssl_context=context)

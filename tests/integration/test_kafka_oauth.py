"""Kafka with SASL/OAUTHBEARER (issue 14, item 1), against a real broker: a Kafka node of
its own whose client listener takes only OAUTHBEARER and validates each token's signature
against the JWKS of a local OAuth 2 provider (``tests/oidc_issuer.py``), its issuer and its
audience. Meterly's settings (``METERLY_KAFKA_SASL_MECHANISM=OAUTHBEARER`` with the
client-credentials grant) are mapped by ``processors/kafka/config.py`` for librdkafka
(``sasl.oauthbearer.method=oidc``: librdkafka fetches and refreshes tokens itself) and for
aiokafka (``ClientCredentialsTokens``, also what Faust gets): both authenticate, write and
read; a wrong client secret, or no token, is refused.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ops.infra.artifacts import KAFKA, ensure
from ops.infra.java import java_executable
from ops.infra.kafka import new_cluster_id
from ops.infra.process import Service, port_open, start, stop_all
from processors.kafka.config import aiokafka_security, librdkafka_security
from processors.runtime.settings import Settings
from tests.oidc_issuer import SERVICE_AUDIENCE, SERVICE_ID, SERVICE_SECRET, Issuer

pytestmark = pytest.mark.integration
VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
LOGIN = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"


def _ports(n: int) -> list[int]:
    found: list[int] = []
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        found.append(int(s.getsockname()[1]))
    for s in sockets:
        s.close()
    return found


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    running = Issuer().start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def oauth_kafka(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node Kafka whose client listener takes OAUTHBEARER only; its bootstrap."""
    settings = Settings()
    lib = ensure(settings.cache_dir, KAFKA, tmp_path_factory.mktemp("maven") / "maven.log")
    state = tmp_path_factory.mktemp("oauth-kafka")
    internal, clients, controller = _ports(3)
    props = {
        "process.roles": "broker,controller", "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"BROKER://127.0.0.1:{internal},OAUTH://127.0.0.1:{clients},"
                     f"CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"BROKER://127.0.0.1:{internal},OAUTH://127.0.0.1:{clients}",
        "inter.broker.listener.name": "BROKER", "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map":
            "BROKER:PLAINTEXT,OAUTH:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.jaas.config": f"{LOGIN} required ;",
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class": VALIDATOR,
        "sasl.oauthbearer.jwks.endpoint.url": f"{issuer.url}/jwks",
        "sasl.oauthbearer.expected.audience": SERVICE_AUDIENCE,
        "sasl.oauthbearer.expected.issuer": issuer.url,
        "log.dirs": str(state / "data"), "num.partitions": "1",
        "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1", "group.initial.rebalance.delay.ms": "0",
    }
    conf = state / "server.properties"
    conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    java, classpath = java_executable(), f"{lib}/*"
    subprocess.run([java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                    f"--cluster-id={new_cluster_id()}", "-c", str(conf)],
                   check=True, capture_output=True)
    marker = f"-Dmeterly.service=oauth-kafka@{state}"
    service = Service(
        name="oauth-kafka",
        argv=[java, marker, "-Xms256m", "-Xmx512m",
              # Kafka 4 fetches from no URL it is not told it may (CVE-2025-27817).
              f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={issuer.url}/jwks",
              "-cp", classpath, "kafka.Kafka", str(conf)],
        workdir=state, log=state / "kafka.log", pidfile=state / "kafka.pid", marker=marker,
        ports=[("127.0.0.1", p) for p in (internal, clients, controller)],
        ready=functools.partial(port_open, "127.0.0.1", clients))
    start(service, timeout=90)
    try:
        yield f"127.0.0.1:{clients}"
    finally:
        stop_all([service])


def _oauth(bootstrap: str, secret: str = SERVICE_SECRET, issuer_url: str = "") -> Settings:
    env = {"kafka_bootstrap": bootstrap, "kafka_security_protocol": "SASL_PLAINTEXT",
           "kafka_sasl_mechanism": "OAUTHBEARER",
           "kafka_oauth_token_url": f"{issuer_url}/token",
           "kafka_oauth_client_id": SERVICE_ID, "kafka_oauth_client_secret": secret}
    # Only the settings under test: not the session's SCRAM credentials from the environment.
    saved = {k: os.environ.pop(k) for k in list(os.environ)
             if k.startswith(("METERLY_KAFKA_SASL", "METERLY_KAFKA_SECURITY"))}
    try:
        return Settings(**env)  # type: ignore[arg-type]
    finally:
        os.environ.update(saved)


def test_librdkafka_and_aiokafka_authenticate_with_oauthbearer_tokens(
        oauth_kafka: str, issuer: Issuer) -> None:
    settings = _oauth(oauth_kafka, issuer_url=issuer.url)
    rd = {"bootstrap.servers": oauth_kafka, **librdkafka_security(settings)}
    assert rd["sasl.oauthbearer.method"] == "oidc"
    admin = AdminClient(rd)
    for future in admin.create_topics([NewTopic("oauth-test", 1, 1)]).values():
        future.result(60)
    producer = Producer(rd)
    for i in range(20):
        producer.produce("oauth-test", f"r{i}".encode())
    assert producer.flush(30) == 0

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer("oauth-test", bootstrap_servers=oauth_kafka,
                                    auto_offset_reset="earliest", group_id="oauth-readers",
                                    **aiokafka_security(settings))
        await consumer.start()
        try:
            got: list[bytes] = []
            while len(got) < 20:
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, "aiokafka read nothing"
                got += [r.value for records in batch.values() for r in records]
            return got
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(read())) == sorted(f"r{i}".encode() for i in range(20))
    assert issuer.tokens_issued >= 2  # one for librdkafka, one for aiokafka's provider


def test_a_wrong_client_secret_or_no_token_is_refused(oauth_kafka: str, issuer: Issuer) -> None:
    wrong = _oauth(oauth_kafka, secret="not-the-secret", issuer_url=issuer.url)
    refused = AdminClient({"bootstrap.servers": oauth_kafka, **librdkafka_security(wrong),
                           "log_level": 0})
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=8)
    anonymous = AdminClient({"bootstrap.servers": oauth_kafka, "log_level": 0,
                             "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)


def test_faust_gets_the_same_token_provider(issuer: Issuer, oauth_kafka: str) -> None:
    from faust.auth import OAuthCredentials

    from processors.kafka.config import ClientCredentialsTokens, faust_credentials

    credentials = faust_credentials(_oauth(oauth_kafka, issuer_url=issuer.url))
    assert isinstance(credentials, OAuthCredentials)
    assert isinstance(credentials.oauth_cb, ClientCredentialsTokens)
    token = asyncio.run(credentials.oauth_cb.token())
    assert token.count(".") == 2  # the JWT the broker validated for aiokafka above

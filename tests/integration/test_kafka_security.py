"""Kafka is no longer an unauthenticated control plane (issue 14, items 2 and 6 of the
security review's H1), on the locally provisioned, secured Kafka and Cassandra:

- nothing connects without credentials;
- an ingest producer's principal (``meterly ingest credentials``) may write the ingest topic
  and nothing else: not the admin topic (minting keys), not the usage or changelog topics
  (counting), no reads, no cluster operation, no SCRAM user for itself;
- an ingest record counts only for the tenant whose key it carries: another tenant's record
  key with this key, no key, or a forged attestation is dead-lettered, and the other tenant
  is charged nothing;
- revoked credentials stop working on both sides (the principal and the key).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cassandra.cluster import NoHostAvailable
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from schemas.topics import ADMIN, COUNTER_CHANGELOG, INGEST, INGEST_DEAD_LETTER, USAGE
from storage.cassandra import PLAIN, CassandraSecurity, connect
from tests.kafka_helpers import read_all_records_with_headers
from tests.stack import Stack, start_stack, wait_for_usage, wait_until

pytestmark = pytest.mark.integration
STRUCTURED = ("content-type", b"application/cloudevents+json")


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("kafka-security"),
                     gateways=1) as running:
        yield running


def _issue(stack: Stack, tenant: str, name: str) -> dict[str, Any]:
    with stack.client() as admin:
        made = admin.post("/v1/admin/ingest/credentials",
                          json={"tenant_id": tenant, "name": name})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def _event(source: str, i: int) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"specversion": "1.0", "id": f"{source}-{i}", "source": source,
                       "type": "jobs", "time": now, "data": {"quantity": 1}}).encode()


def _write(config: dict[str, str], topic: str, value: bytes, key: bytes,
           headers: list[tuple[str, bytes]] | None = None) -> KafkaError | None:
    """Produce one record; the delivery error, or None when the broker took it."""
    result: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 15_000, "log_level": 0})
    producer.produce(topic, value, key=key, headers=headers or [],
                     on_delivery=lambda err, _msg: result.append(err))
    producer.flush(30)
    assert result, f"no delivery report for {topic}"
    return result[0]


def test_nothing_connects_without_credentials(settings: Settings) -> None:
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    anonymous = AdminClient({"bootstrap.servers": settings.kafka_bootstrap,
                             "socket.timeout.ms": 3000, "log_level": 0})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    wrong = AdminClient({**client_config(settings.kafka_bootstrap),
                         "sasl.password": "not-the-password", "log_level": 0})
    with pytest.raises(KafkaException):
        wrong.list_topics(timeout=5)
    with pytest.raises(NoHostAvailable) as refused:
        connect(settings.cassandra_hosts, security=PLAIN)
    assert "authentication" in str(refused.value).lower()
    with pytest.raises(NoHostAvailable):  # the default superuser may no longer log in
        connect(settings.cassandra_hosts, security=CassandraSecurity("cassandra", "cassandra"))


def test_an_ingest_principal_writes_the_ingest_topic_and_nothing_else(stack: Stack) -> None:
    tenant, _key = stack.new_tenant("Scoped Producer")
    made = _issue(stack, tenant, f"scoped-{uuid.uuid4().hex[:6]}")
    kafka = made["kafka"]
    assert kafka["sasl.username"] == made["principal"]
    assert made["principal"].startswith("ingest-")
    prefix = stack.settings.topic_prefix
    header = [STRUCTURED, ("meterly-key", made["key"]["key"].encode())]
    assert _write(kafka, INGEST.full_name(prefix), _event("scoped", 0), tenant.encode(),
                  header) is None
    for spec in (ADMIN, USAGE, COUNTER_CHANGELOG, INGEST_DEAD_LETTER):
        refused = _write(kafka, spec.full_name(prefix), b"forged", tenant.encode())
        assert refused is not None, f"the ingest principal wrote {spec.name}"
        assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (spec.name, refused)
    reader = Consumer({**kafka, "group.id": f"{prefix}snoop", "log_level": 0})
    try:
        reader.assign([TopicPartition(INGEST.full_name(prefix), 0, 0)])
        msg = wait_until("the read refused", lambda: reader.poll(1.0), timeout=30)
        assert msg.error() is not None
        assert msg.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                      KafkaError.GROUP_AUTHORIZATION_FAILED), msg.error()
    finally:
        reader.close()
    admin = AdminClient({**kafka, "log_level": 0})
    (created,) = admin.create_topics([NewTopic(f"{prefix}rogue", 1, 1)]).values()
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        created.result(30)
    with stack.client(token=made["key"]["key"]) as client:
        # Over HTTP the ingest key sends usage and reads nothing.
        refused_read = client.get("/v1/usage")
        assert refused_read.status_code == 403, refused_read.text
        assert refused_read.json()["type"].endswith("/key-scope")
        sent = client.post("/v1/events", content=_event("scoped-http", 0),
                           headers={"content-type": "application/cloudevents+json"})
        assert sent.status_code == 200, sent.text


def test_a_record_counts_only_for_the_tenant_whose_key_it_carries(stack: Stack) -> None:
    tenant_a, key_a = stack.new_tenant("Producer A")
    tenant_b, key_b = stack.new_tenant("Victim B")
    made = _issue(stack, tenant_a, f"a-{uuid.uuid4().hex[:6]}")
    kafka, ingest_key = made["kafka"], made["key"]["key"].encode()
    topic = INGEST.full_name(stack.settings.topic_prefix)
    producer = Producer({**kafka, "enable.idempotence": True, "acks": "all"})
    structured = STRUCTURED
    forged = ("meterly-attested-key", b"records-20260101-0000.key_0000.00ff")
    attempts = {  # reason expected -> the headers of a record keyed with B's tenant id
        "belongs to another tenant": [structured, ("meterly-key", ingest_key)],
        "no ingest credential": [structured],
        "no API key Meterly knows": [structured, ("meterly-key", b"mtr_" + b"x" * 43)],
        "records key": [structured, forged],
    }
    for i, headers in enumerate(attempts.values()):
        producer.produce(topic, _event("forged", i), key=tenant_b.encode(), headers=headers)
    for i in range(25):
        producer.produce(topic, _event("own", i), key=tenant_a.encode(),
                         headers=[structured, ("meterly-key", ingest_key)])
    assert producer.flush(30) == 0
    wait_for_usage(stack, key_a, {"jobs": (25, "25")}, timeout=60)

    def dead_for_b() -> list[str]:
        return [dict(h)["meterly-error"].decode() for k, _v, h in read_all_records_with_headers(
            stack.settings.kafka_bootstrap or "",
            INGEST_DEAD_LETTER.full_name(stack.settings.topic_prefix)) if k == tenant_b.encode()]

    reasons = wait_until("B's four records dead-lettered",
                         lambda: (found := dead_for_b()) and len(found) >= 4 and found,
                         timeout=60)
    assert sorted(next(r for r in attempts if r in got) for got in reasons) == sorted(attempts)
    with stack.client(token=key_b) as client:
        assert client.get("/v1/usage").json()["meters"] == []  # B is charged nothing


def test_revoked_ingest_credentials_stop_on_both_sides(stack: Stack) -> None:
    tenant, key = stack.new_tenant("Revoked Producer")
    name = f"gone-{uuid.uuid4().hex[:6]}"
    made = _issue(stack, tenant, name)
    topic = INGEST.full_name(stack.settings.topic_prefix)
    header = [STRUCTURED, ("meterly-key", made["key"]["key"].encode())]
    assert _write(made["kafka"], topic, _event("before", 0), tenant.encode(), header) is None
    wait_for_usage(stack, key, {"jobs": (1, "1")}, timeout=60)
    with stack.client() as admin:
        gone = admin.post(f"/v1/admin/ingest/credentials/{name}/revoke")
        assert gone.status_code == 200, gone.text
        assert gone.json()["key"]["revoked_at"]
        listed = admin.get("/v1/admin/ingest/credentials").json()
        assert any(c["name"] == name and c["key"]["revoked_at"] for c in listed)
        audit = admin.get("/v1/admin/audit", params={"action": "ingest.credentials"}).json()
        assert {e["action"] for e in audit["data"]} >= {"ingest.credentials_issued",
                                                         "ingest.credentials_revoked"}
    # The principal is gone: the broker refuses the login.
    refused = AdminClient({**made["kafka"], "log_level": 0})
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=5)
    # And the key no longer counts, even written by Meterly's own principal.
    meterly = client_config(stack.settings.kafka_bootstrap or "")
    assert _write(meterly, topic, _event("after", 0), tenant.encode(), header) is None
    with stack.client(token=made["key"]["key"]) as client:
        assert client.post("/v1/events", content=_event("after-http", 0), headers={
            "content-type": "application/cloudevents+json"}).status_code == 401

    def refused_after() -> bool:
        return any(k == tenant.encode() and b"revoked" in dict(h)["meterly-error"]
                   for k, _v, h in read_all_records_with_headers(
                       stack.settings.kafka_bootstrap or "",
                       INGEST_DEAD_LETTER.full_name(stack.settings.topic_prefix)))

    wait_until("the record with the revoked key dead-lettered", refused_after, timeout=60)
    wait_for_usage(stack, key, {"jobs": (1, "1")})

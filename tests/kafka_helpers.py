"""Small, real Kafka helpers for tests: a fresh topic, produce, and read back to the end."""

from __future__ import annotations

import secrets
import time
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.kafka.config import client_config
from processors.kafka.retry import with_retries
from schemas import admin_v1


def new_topic(bootstrap: str, prefix: str, partitions: int = 1, replication: int = 1) -> str:
    name = f"{prefix}probe-{secrets.token_hex(4)}"
    admin = AdminClient(client_config(bootstrap))
    for future in admin.create_topics([NewTopic(name, partitions, replication)]).values():
        future.result(timeout=30)
    return name


def producer(bootstrap: str, **extra: str) -> Producer:
    return Producer({**client_config(bootstrap), "enable.idempotence": True, "acks": "all",
                     **extra})


def read_all(bootstrap: str, topic: str, isolation: str = "read_committed",
             timeout: float = 30.0) -> list[bytes]:
    """Every visible value of ``topic`` from the beginning up to its current end."""
    return [v for _k, v in read_all_records(bootstrap, topic, isolation, timeout)]


def read_all_records(bootstrap: str, topic: str, isolation: str = "read_committed",
                     timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    """Every visible (key, value) of ``topic``, partition by partition in offset order."""
    return [(k, v) for k, v, _h in read_all_records_with_headers(bootstrap, topic, isolation,
                                                                  timeout)]


def read_all_records_with_headers(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 60.0
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Every visible (key, value, headers) of ``topic`` in offset order per partition."""
    consumer = Consumer({
        **client_config(bootstrap),
        "group.id": f"probe-{secrets.token_hex(4)}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p, 0) for p in meta.partitions]
        consumer.assign(partitions)
        ends = {}
        for tp in partitions:
            _low, high = with_retries(lambda tp=tp: consumer.get_watermark_offsets(tp, timeout=10),
                                      "watermarks")
            ends[tp.partition] = high
        values: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {len(done)}/{len(ends)} partitions done")
            msg = consumer.poll(0.5)
            if msg is None:
                # Transaction markers occupy offsets without being delivered; the position
                # tells whether the end was reached.
                for tp in consumer.position(partitions):
                    if tp.offset >= ends[tp.partition]:
                        done.add(tp.partition)
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(err)
            values.append((msg.key(), msg.value(), msg.headers() or []))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return values
    finally:
        consumer.close()


def subscribe_on_admin_topic(bootstrap: str, admin_topic: str, tenants: list[str],
                             since: datetime) -> Producer:
    """A flat 10 EUR plan and ``tenants`` on it from ``since``, written straight to the
    admin topic (as the gateway would, without a gateway); returns the producer, flushed."""
    writer = producer(bootstrap)
    stamp = since.isoformat().replace("+00:00", "Z")
    plan = admin_v1.PlanVersion("flat", 1, stamp, {
        "name": "flat", "currency": "EUR", "flat_fee": "10", "prices": {}})
    records: list[admin_v1.AdminEntity] = [plan]
    for tenant in tenants:
        records.append(admin_v1.Tenant(tenant, tenant, "b@example.com", "EUR", "active",
                                       stamp, stamp, plan="flat"))
        records.append(admin_v1.Subscription(
            tenant, (admin_v1.Assignment("flat", 1, stamp),), stamp))
    for i, record in enumerate(records):
        writer.produce(admin_topic, admin_v1.encode(record), key=record.record_key)
        if i % 10_000 == 9_999:
            writer.flush(30)
    assert writer.flush(60) == 0
    return writer

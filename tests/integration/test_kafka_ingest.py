"""Kafka ingest: CloudEvents in structured and binary mode, invalid records dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from processors.runtime.settings import Settings
from schemas.topics import INGEST, INGEST_DEAD_LETTER
from tests.kafka_helpers import read_all_records_with_headers
from tests.stack import Stack, start_stack, wait_for_usage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("ingest"), gateways=1) as running:
        yield running


def test_structured_and_binary_records_count_and_invalid_ones_are_dead_lettered(
    stack: Stack,
) -> None:
    tenant, key = stack.new_tenant()
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    topic = INGEST.full_name(stack.settings.topic_prefix)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    for i in range(20):
        event = {"specversion": "1.0", "id": f"s-{i}", "source": "orders", "type": "orders",
                 "time": now, "data": {"quantity": 0.5}}
        producer.produce(topic, json.dumps(event).encode(), key=tenant.encode(),
                         headers=[("content-type", b"application/cloudevents+json")])
    for i in range(10):
        producer.produce(topic, b'{"quantity": 3}', key=tenant.encode(), headers=[
            ("ce_specversion", b"1.0"), ("ce_id", f"b-{i}".encode()),
            ("ce_source", b"orders"), ("ce_type", b"orders"), ("ce_time", now.encode()),
            ("content-type", b"application/json")])
    # A resend of a structured event: counted once.
    producer.produce(topic, json.dumps({"specversion": "1.0", "id": "s-0", "source": "orders",
                                        "type": "orders", "time": now,
                                        "data": {"quantity": 0.5}}).encode(),
                     key=tenant.encode(),
                     headers=[("content-type", b"application/cloudevents+json")])
    invalid = [
        (None, b"{}", [("content-type", b"application/cloudevents+json")], "tenant id"),
        (b"ten_nobody", b"{}", [("ce_specversion", b"1.0")], "unknown tenant"),
        (tenant.encode(), b"{not json", [("content-type", b"application/cloudevents+json")],
         "not valid JSON"),
        (tenant.encode(), b"{}", [], "neither structured mode"),
        (tenant.encode(), b'{"quantity": -4}', [
            ("ce_specversion", b"1.0"), ("ce_id", b"neg"), ("ce_source", b"o"),
            ("ce_type", b"orders")], ">= 0"),
    ]
    for record_key, value, headers, _reason in invalid:
        producer.produce(topic, value, key=record_key, headers=headers)
    assert producer.flush(30) == 0

    wait_for_usage(stack, key, {"orders": (30, "40.0")})
    dead = read_all_records_with_headers(
        bootstrap, INGEST_DEAD_LETTER.full_name(stack.settings.topic_prefix))
    assert len(dead) == len(invalid)
    # Records with different keys travel through different partitions: compare as sets.
    reasons = sorted(dict(h)["meterly-error"].decode() for _k, _v, h in dead)
    expected = [reason for _k, _v, _h, reason in invalid]
    matched = sorted(next(e for e in expected if e in got) for got in reasons)
    assert matched == sorted(expected), reasons

"""Kafka ingest: CloudEvents in structured and binary mode, invalid records dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from processors.kafka.config import client_config
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
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all"})
    own = ("meterly-key", key.encode())
    for i in range(20):
        event = {"specversion": "1.0", "id": f"s-{i}", "source": "orders", "type": "orders",
                 "time": now, "data": {"quantity": 0.5}}
        producer.produce(topic, json.dumps(event).encode(), key=tenant.encode(),
                         headers=[("content-type", b"application/cloudevents+json"), own])
    for i in range(10):
        producer.produce(topic, b'{"quantity": 3}', key=tenant.encode(), headers=[
            ("ce_specversion", b"1.0"), ("ce_id", f"b-{i}".encode()),
            ("ce_source", b"orders"), ("ce_type", b"orders"), ("ce_time", now.encode()),
            ("content-type", b"application/json"), own])
    # A resend of a structured event: counted once.
    producer.produce(topic, json.dumps({"specversion": "1.0", "id": "s-0", "source": "orders",
                                        "type": "orders", "time": now,
                                        "data": {"quantity": 0.5}}).encode(),
                     key=tenant.encode(),
                     headers=[("content-type", b"application/cloudevents+json"), own])
    invalid = [
        (None, b"{}", [("content-type", b"application/cloudevents+json")], "tenant id"),
        (b"ten_nobody", b"{}", [("ce_specversion", b"1.0")], "unknown tenant"),
        (tenant.encode(), b"{not json",
         [("content-type", b"application/cloudevents+json"), own], "not valid JSON"),
        (tenant.encode(), b"{}", [own], "neither structured mode"),
        (tenant.encode(), b'{"quantity": -4}', [
            ("ce_specversion", b"1.0"), ("ce_id", b"neg"), ("ce_source", b"o"),
            ("ce_type", b"orders"), own], ">= 0"),
        (tenant.encode(), json.dumps({"specversion": "1.0", "id": "nokey", "source": "o",
                                      "type": "orders"}).encode(),
         [("content-type", b"application/cloudevents+json")], "no ingest credential"),
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
    # The key is never kept: the dead letters of records that carried it hold an
    # attestation instead (the replay path), and no header holds the raw key.
    for _k, _v, headers in dead:
        assert key.encode() not in {v for _h, v in headers}
        assert "meterly-key" not in dict(headers)
    attested = [h for _k, _v, h in dead if "meterly-attested-key" in dict(h)]
    assert len(attested) == 3


def _event(i: int, now: str, **changes: object) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"ok-{i}", "source": "poison-test", "type": "calls",
            "time": now, "data": {"quantity": 1}, **changes}


def test_one_poison_record_of_each_kind_then_valid_ones_all_count(stack: Stack) -> None:
    """Each record below once crashed the validator, which then stopped the whole ingest
    path: now each is dead-lettered with its reason and the 100 valid records after it
    count."""
    tenant, key = stack.new_tenant("Poison Proof")
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    topic = INGEST.full_name(stack.settings.topic_prefix)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    structured = [("content-type", b"application/cloudevents+json"),
                  ("meterly-key", key.encode())]
    deep = '{"specversion": "1.0", "id": "deep", "source": "p", "type": "calls", "data": ' \
        + "[" * 100_000 + "]" * 100_000 + "}"
    poison = [
        deep.encode(),
        json.dumps(_event(-1, "9999-12-31T23:59:59-10:00", id="late-end")).encode(),
        json.dumps(_event(-2, "0001-01-01T00:00:00+01:00", id="early-start")).encode(),
        json.dumps(_event(-3, now, id="huge", data={"quantity": "1e30"})).encode(),
        json.dumps(_event(-4, now, id=None)).encode(),
        b"\xff\xfe not utf-8",
    ]
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all", "message.max.bytes": 4 * 2**20})
    for value in poison:
        producer.produce(topic, value, key=tenant.encode(), headers=structured)
    for i in range(100):
        producer.produce(topic, json.dumps(_event(i, now)).encode(), key=tenant.encode(),
                         headers=structured)
    assert producer.flush(30) == 0
    wait_for_usage(stack, key, {"calls": (100, "100")}, timeout=60)
    dead = [h for _k, _v, h in read_all_records_with_headers(
        bootstrap, INGEST_DEAD_LETTER.full_name(stack.settings.topic_prefix))
        if _k == tenant.encode()]
    assert len(dead) == len(poison)
    assert all(dict(h)["meterly-error"] for h in dead)


def test_over_http_a_poison_event_is_a_receipt_and_never_a_500(stack: Stack) -> None:
    _tenant, key = stack.new_tenant("Poison Http")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    batch = [_event(1, "9999-12-31T23:59:59-10:00", id="late-end"), _event(2, now),
             _event(3, "0001-01-01T00:00:00+01:00", id="early-start"),
             _event(4, now, data={"quantity": "1e30"})]
    with stack.client(token=key) as client:
        answer = client.post("/v1/events", json=batch)
        assert answer.status_code == 200, answer.text
        receipts = [r["status"] for r in answer.json()["receipts"]]
        assert receipts == ["rejected", "accepted", "rejected", "rejected"]
        assert "out of range" in answer.json()["receipts"][0]["reason"]


def test_bad_operator_input_is_an_answer_and_harms_no_one_else(stack: Stack) -> None:
    tenant, key = stack.new_tenant("Null Name")
    with stack.client() as admin:
        nulled = admin.patch(f"/v1/admin/tenants/{tenant}", json={"name": None})
        assert nulled.status_code == 422, nulled.text
        assert nulled.json()["type"].endswith("/invalid-request")
        assert admin.get("/v1/admin/tenants").status_code == 200  # every listing still works
        forged = admin.get("/v1/admin/invoices", params={"cursor": "AAAAAAAAAAAAAAAAAAAAAAAA"})
        assert forged.status_code == 400, forged.text
        assert forged.json()["type"].endswith("/invalid-cursor")
        assert admin.get("/v1/admin/invoices").status_code == 200
    with stack.client(token=key) as client:
        assert client.get("/v1/usage").status_code == 200  # Cassandra reads still work

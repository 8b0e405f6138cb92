"""No record stops a reader (issue 14, item 2; the security review's H1 "counter halt"):
one undecodable record on every topic Meterly reads is set aside, unchanged, with its
reason and reader, and counting, billing, rendering and delivery go on through to the
invoice and its webhook, with no worker exiting.

Each poisoned topic and the reader that must set its record aside (protocol step named):

- ``usage.v1``: the counter, in its batch's transaction (counter step 3);
- ``counter-changelog.v1``: the mirror (mirror step 1) and the counter restoring after a
  restart (counter step 6);
- ``admin.v1``: every process following it (``admin-follower``);
- ``invoices.v1``: the invoice renderer; ``billing-commands.v1``: the billing worker;
- ``webhook-events.v1`` and ``webhook-retry-1.v1``: the webhook dispatcher;
- ``webhook-dead-letter.v1``: the operator API's dead-letter listing;
- ``ingest.cloudevents.v1``: the ingest validator, into its own dead-letter topic.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from schemas.topics import (
    ADMIN,
    BILLING_COMMANDS,
    COUNTER_CHANGELOG,
    INGEST,
    INGEST_DEAD_LETTER,
    INVOICES,
    USAGE,
    WEBHOOK_DEAD_LETTER,
    WEBHOOK_EVENTS,
    WEBHOOK_RETRIES,
)
from tests.kafka_helpers import read_all_records_with_headers
from tests.stack import ALL_WORKERS, Stack, start_stack, wait_for_usage, wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

#: topic -> the readers that must set its poisoned record aside.
READERS = {
    USAGE.name: {"counter"},
    COUNTER_CHANGELOG.name: {"mirror", "counter"},
    ADMIN.name: {"admin-follower"},
    INVOICES.name: {"invoice-renderer"},
    BILLING_COMMANDS.name: {"billing"},
    WEBHOOK_EVENTS.name: {"webhook-dispatcher"},
    WEBHOOK_RETRIES[0].name: {"webhook-dispatcher"},
    WEBHOOK_DEAD_LETTER.name: {"webhook-dead-letter-reader"},
}


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("invalid-records"), gateways=1,
            workers=ALL_WORKERS,
            extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                       "METERLY_BILLING_TICK_SECONDS": "0.5",
                       "METERLY_INVOICE_PREFIX": "INV"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json={
                "name": "poison", "currency": "EUR",
                "prices": {"jobs": {"model": "per_unit", "unit_price": "0.10"}}})
            assert made.status_code == 201, made.text
        yield running


def _events(source: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": f"{source}-{i}", "source": source, "type": "jobs",
             "time": now, "data": {"quantity": 1}} for i in range(n)]


def _invalid_records(stack: Stack) -> dict[str, dict[str, Any]]:
    """The operator API's listing, by topic (without the prefix)."""
    with stack.client() as admin:
        listed = admin.get("/v1/admin/invalid-records")
    assert listed.status_code == 200, listed.text
    prefix = stack.settings.topic_prefix
    return {r["source"].rsplit("/", 2)[0].removeprefix(prefix): r for r in listed.json()}


def test_an_undecodable_record_on_every_topic_is_set_aside_and_everything_goes_on(
        stack: Stack, live_receiver: Receiver) -> None:
    receiver = live_receiver
    tenant, key = stack.new_tenant("Poisoned", plan="poison")
    with stack.client() as admin:
        hook = admin.post(f"/v1/admin/tenants/{tenant}/webhooks", json={"url": receiver.url})
        assert hook.status_code == 201, hook.text
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    prefix = stack.settings.topic_prefix
    garbage = b"\x00\xffnot a record of this topic"
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all"})
    for topic in READERS:
        # Changelog partition 0 is restored by the counter (it owns every partition); a
        # counter key, so the mirror tries it as a counter too.
        extra: dict[str, Any] = ({"partition": 0, "key": b"Cpoison"}
                                 if topic == COUNTER_CHANGELOG.name else {"key": tenant.encode()})
        producer.produce(f"{prefix}{topic}", garbage, **extra)
    producer.produce(INGEST.full_name(prefix), garbage, key=tenant.encode())
    assert producer.flush(30) == 0

    # The counter restores the changelog (and its poisoned record) after a restart.
    counter = next(w for w in stack.workers if w.name == "counter")
    counter.kill()
    counter.start()
    # The webhook dead-letter topic is read when an operator lists it.
    with stack.client() as admin:
        assert admin.get("/v1/admin/webhooks/dead-letter").status_code == 200

    # Counting goes on: over HTTP and over Kafka ingest.
    with stack.client(token=key) as client:
        sent = client.post("/v1/events", json=_events("http", 10))
        assert sent.json()["accepted"] == 10, sent.text
    ingest = Producer({**client_config(bootstrap), "enable.idempotence": True})
    for event in _events("kafka", 5):
        ingest.produce(INGEST.full_name(prefix), json.dumps(event).encode(),
                       key=tenant.encode(),
                       headers=[("content-type", b"application/cloudevents+json"),
                                ("meterly-key", key.encode())])
    assert ingest.flush(30) == 0
    wait_for_usage(stack, key, {"jobs": (15, "15")}, timeout=90)

    found = wait_until("every poisoned record set aside by its readers", lambda: (
        (listed := _invalid_records(stack)).keys() >= READERS.keys()
        and all(READERS[t] <= set(listed[t]["readers"]) for t in READERS) and listed),
        timeout=90)
    for topic, record in found.items():
        assert record["reason"], topic
        assert record["size"] == len(garbage), topic
    ingest_dead = [h for k, v, h in read_all_records_with_headers(
        bootstrap, INGEST_DEAD_LETTER.full_name(prefix)) if v == garbage]
    assert len(ingest_dead) == 1

    # Billing, rendering and delivery go on: the invoice bills the 15 events, its PDF is
    # rendered and its webhook delivered.
    period = period_of(datetime.now(UTC))
    stack.close_now(tenant, period)
    done = stack.finalized_invoice(tenant, period)
    assert done["total"] == {"amount": "1.50", "currency": "EUR"}
    wait_until("invoice.finalized delivered", lambda: any(
        json.loads(r.body).get("type") == "invoice.finalized" for r in receiver.received),
        timeout=60)
    # No worker exited on its own (the counter's restart above was the test's own kill).
    assert {w.name: w.restarts for w in stack.workers} == {w.name: 0 for w in stack.workers}
    assert all(w.alive() for w in stack.workers)


def test_the_listing_narrows_to_a_topic_and_is_operator_only(stack: Stack,
                                                             tmp_path: Path) -> None:
    _tenant, key = stack.new_tenant("Snooper")
    with stack.client(token=key) as client:
        assert client.get("/v1/admin/invalid-records").status_code == 403
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    producer = Producer(client_config(bootstrap))
    marker = uuid.uuid4().hex.encode()
    producer.produce(BILLING_COMMANDS.full_name(stack.settings.topic_prefix), marker)
    assert producer.flush(30) == 0
    with stack.client() as admin:
        def narrowed() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = admin.get(
                "/v1/admin/invalid-records", params={"topic": BILLING_COMMANDS.name}).json()
            return rows if any(r["size"] == len(marker) for r in rows) else []

        rows = wait_until("the marker listed", narrowed, timeout=60)
    assert {r["source"].rsplit("/", 2)[0] for r in rows} == {
        BILLING_COMMANDS.full_name(stack.settings.topic_prefix)}

"""Producer gap detection end to end: events with the CloudEvents ``sequence`` extension,
over HTTP and over the Kafka ingest topic, with the counter SIGKILLed between them.

The gaps are tracked by the counter in its transaction (processors/usage/counter.py, step 2
and ``_produce_sequences``) and restored from its changelog after the kill (step 6): the
test attacks both by killing it between the batch that opens the gaps and the one that
closes them, twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from standardwebhooks.webhooks import Webhook

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from schemas.topics import INGEST
from tests.stack import CORE_WORKERS, Stack, start_stack, wait_until
from tests.usage_load import WorkerProcess
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("gaps"), gateways=1,
                     workers=(*CORE_WORKERS, "webhook-dispatcher", "billing"),
                     extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                                "METERLY_INVOICE_PREFIX": "GAP"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json={
                "name": "gaps", "currency": "EUR",
                "prices": {"calls": {"model": "per_unit", "unit_price": "0.01"}}})
            assert made.status_code == 201, made.text
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.close()


def _events(numbers: list[int], source: str = "billing-exporter") -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": source, "type": "calls",
             "time": now, "sequence": str(n).zfill(8), "data": {"quantity": 1}}
            for n in numbers]


def _gaps(stack: Stack, key: str) -> dict[str, Any]:
    with stack.client(token=key) as client:
        answer = client.get("/v1/usage/gaps")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _ranges(body: dict[str, Any], source: str = "billing-exporter") -> list[tuple[int, int]]:
    found = next((s for s in body["sources"] if s["source"] == source), None)
    return [] if found is None else [(g["first"], g["last"]) for g in found["gaps"]]


def _counter(stack: Stack) -> WorkerProcess:
    return next(w for w in stack.workers if w.name == "counter")


def _post(stack: Stack, key: str, events: list[dict[str, Any]]) -> None:
    with stack.client(token=key) as client:
        answer = client.post("/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(events), answer.text


@pytest.mark.parametrize("round_", [1, 2])
def test_gaps_are_reported_exactly_announced_and_closed_across_a_counter_kill(
        stack: Stack, receiver: Receiver, round_: int) -> None:
    tenant, key = stack.new_tenant(f"Gaps {round_}", plan="gaps")
    with stack.client() as admin:
        made = admin.post(f"/v1/admin/tenants/{tenant}/webhooks",
                          json={"url": receiver.url, "event_types": ["usage.gap_detected"]})
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]

    sent = [n for n in range(1, 101) if not 10 <= n <= 14 and n != 50]
    _post(stack, key, _events(sent))
    _post(stack, key, _events([7, 7, 30]))  # numbers seen before: nothing changes
    _post(stack, key, _events([1, 2, 4], source="other-exporter"))
    wait_until("the gaps", lambda: (body := _gaps(stack, key)) and _ranges(body) == [
        (10, 14), (50, 50)] and _ranges(body, "other-exporter") == [(3, 3)], timeout=60)
    body = _gaps(stack, key)
    source = next(s for s in body["sources"] if s["source"] == "billing-exporter")
    assert (source["lowest"], source["highest"], source["missing"]) == (1, 100, 6)
    assert _ranges(body, "other-exporter") == [(3, 3)]
    assert body["open_gaps"] == 3

    # Announced once per opened range, signed.
    def announced() -> set[tuple[str, int, int]] | None:
        found = set()
        for r in receiver.received:
            payload = Webhook(secret).verify(r.body, r.headers)
            data = payload["data"]
            found.add((data["source"], data["first_missing"], data["last_missing"]))
        wanted = {("billing-exporter", 10, 14), ("billing-exporter", 50, 50),
                  ("other-exporter", 3, 3)}
        return found if wanted <= found else None
    assert wait_until("usage.gap_detected", announced, timeout=60) == {
        ("billing-exporter", 10, 14), ("billing-exporter", 50, 50), ("other-exporter", 3, 3)}

    # A close while the gaps are open lists them on the invoice (METERLY_CLOSE_WITH_GAPS
    # defaults to list): the usage may be short by the missing events.
    period = period_of(datetime.now(UTC))
    with stack.client() as admin:
        closed = admin.post("/v1/admin/billing/close", json={"period": period,
                                                           "tenant_ids": [tenant]})
        assert closed.status_code == 202, closed.text
        invoice_id = closed.json()["invoices"][tenant]

        def finalized() -> dict[str, Any] | None:
            doc = admin.get(f"/v1/admin/tenants/{tenant}/invoices/{invoice_id}").json()
            return doc if doc["status"] == "finalized" else None
        invoice = wait_until("the invoice", finalized, timeout=90)
    assert {(g["source"], g["missing"], tuple(map(tuple, g["ranges"])))
            for g in invoice["open_gaps"]} == {
        ("billing-exporter", 6, ((10, 14), (50, 50))), ("other-exporter", 1, ((3, 3),))}

    counter = _counter(stack)
    counter.kill()
    assert counter.proc is not None
    assert counter.proc.wait(10) == -9
    counter.start()
    _post(stack, key, _events([10, 11, 12, 13, 14]))
    wait_until("the first range closed", lambda: _ranges(_gaps(stack, key)) == [(50, 50)],
               timeout=90)

    # The last missing number through the Kafka ingest topic, in binary mode.
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all"})
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    producer.produce(INGEST.full_name(stack.settings.topic_prefix), json.dumps(
        {"quantity": 1}).encode(), key=tenant.encode(), headers=[
        ("ce_specversion", b"1.0"), ("ce_id", uuid.uuid4().hex.encode()),
        ("ce_source", b"billing-exporter"), ("ce_type", b"calls"), ("ce_time", now.encode()),
        ("ce_sequence", b"50"), ("content-type", b"application/json"),
        ("meterly-key", key.encode())])
    assert producer.flush(30) == 0
    wait_until("no gap left", lambda: _ranges(_gaps(stack, key)) == [], timeout=60)
    body = _gaps(stack, key)
    source = next(s for s in body["sources"] if s["source"] == "billing-exporter")
    assert source["missing"] == 0
    with stack.client(token=key) as client:
        meters = client.get("/v1/usage").json()["meters"]
    # Every event once: 94, then 7, 7 and 30 again (new ids, numbers seen before), 3 from
    # the other source, 10 to 14, and 50.
    assert sum(m["count"] for m in meters) == len(sent) + 3 + 3 + 5 + 1

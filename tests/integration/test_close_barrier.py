"""The close barrier: a close waits until the usage accepted before it is counted and mirrored.

Its own stack (counter, mirror, ingest validator, billing, renderer, one gateway) with a
billing clock file. Each test pauses one worker with SIGSTOP (it keeps its sockets and its
group membership's session until the timeout, as a frozen VM would), checks that the pause
landed (the usage it holds back is not in Cassandra, and the barrier names the paused stage
with records behind while the close is held), resumes it, and compares the invoice with
what was accepted. They attack step 2 of the billing worker's protocol
(processors/billing/close_worker.py) through steps 2 to 4 of the barrier's
(processors/usage/completeness.py): the validator's stage, the counter's, the mirror's.
Each runs twice.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas.rfc3339 import parse_time
from schemas.topics import INGEST
from tests.stack import BILLING_WORKERS, CORE_WORKERS, Stack, start_stack, wait_until
from tests.usage_load import WorkerProcess

pytestmark = pytest.mark.integration
PLAN = {"name": "barrier", "currency": "EUR",
        "prices": {"calls": {"model": "per_unit", "unit_price": "0.01"}}}
ROUNDS = (1, 2)


@pytest.fixture(scope="module")
def stack(settings: Settings, clock: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    clock.write_text(datetime.now(UTC).isoformat())  # no period due yet
    with start_stack(
            settings, tmp_path_factory.mktemp("barrier"), gateways=1,
            workers=CORE_WORKERS + BILLING_WORKERS,
            extra_env={"METERLY_CLOCK_FILE": str(clock), "METERLY_BILLING_TICK_SECONDS": "0.5",
                       # Round 2 of the scheduled close finds its period swept already:
                       # the reconciliation enqueues its close.
                       "METERLY_BILLING_RECONCILE_SECONDS": "3",
                       "METERLY_INVOICE_PREFIX": "BAR"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json=PLAN)
            assert made.status_code == 201, made.text
        yield running


def _worker(stack: Stack, name: str) -> WorkerProcess:
    return next(w for w in stack.workers if w.name == name)


def _events(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": "barrier",
             "type": "calls", "time": now, "data": {"quantity": 1}} for _ in range(n)]


def _send(stack: Stack, key: str, n: int) -> int:
    with stack.client(token=key) as client:
        sent = 0
        while sent < n:
            batch = _events(min(500, n - sent))
            r = client.post("/v1/events", json=batch)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(batch)
            sent += len(batch)
    return sent


def _counted(stack: Stack, key: str) -> int:
    with stack.client(token=key) as client:
        meters = client.get("/v1/usage").json()["meters"]
    return sum(m["count"] for m in meters if m["meter"] == "calls")


def _status(stack: Stack) -> dict[str, Any]:
    with stack.client() as admin:
        answer = admin.get("/v1/admin/billing/status")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _invoice(stack: Stack, tenant: str, period: str) -> dict[str, Any] | None:
    with stack.client() as admin:
        docs = admin.get(f"/v1/admin/tenants/{tenant}/invoices").json()
    return next((d for d in docs if d["period"] == period and d["status"] == "finalized"
                 and d["pdf_url"]), None)


def _close_now(stack: Stack, tenant: str, period: str) -> datetime:
    asked = datetime.now(UTC)
    with stack.client() as admin:
        r = admin.post("/v1/admin/billing/close", json={"period": period,
                                                        "tenant_ids": [tenant]})
    assert r.status_code == 202, r.text
    return asked


def _held_by(stack: Stack, stage: str, tenant: str, period: str) -> None:
    """The fault landed: the barrier waits for ``stage`` with records behind, a close is
    held, and no invoice is finalized meanwhile."""
    def held() -> bool:
        status = _status(stack)
        return status["closes_waiting"] >= 1 and any(
            w["stage"] == stage and w["records_behind"] > 0 for w in status["workers"])
    wait_until(f"the close held by the {stage}", held, timeout=60)
    assert _invoice(stack, tenant, period) is None


def _quantity(invoice: dict[str, Any], period: str) -> Decimal:
    return sum((Decimal(ln["quantity"]) for ln in invoice["lines"]
                if ln.get("meter") == "calls" and ln["period"] == period), Decimal(0))


@pytest.mark.parametrize("paused", ["counter", "mirror"])
@pytest.mark.parametrize("round_", ROUNDS)
def test_a_close_on_demand_waits_for_a_paused_stage(stack: Stack, paused: str,
                                                    round_: int) -> None:
    tenant, key = stack.new_tenant(f"Paused {paused} {round_}", plan="barrier")
    period = period_of(datetime.now(UTC))
    worker = _worker(stack, paused)
    worker.pause()
    try:
        accepted = _send(stack, key, 1000)
        assert _counted(stack, key) < accepted  # held back by the paused worker
        asked = _close_now(stack, tenant, period)
        _held_by(stack, paused, tenant, period)
    finally:
        worker.resume()
    invoice = wait_until("the invoice", lambda: _invoice(stack, tenant, period), timeout=120)
    assert _quantity(invoice, period) == accepted
    assert parse_time(invoice["complete_through"]) >= asked


@pytest.mark.parametrize("round_", ROUNDS)
def test_a_close_waits_for_a_paused_ingest_validator(stack: Stack, round_: int) -> None:
    """Usage written to the Kafka ingest topic while the validator is paused."""
    tenant, key = stack.new_tenant(f"Paused validator {round_}", plan="barrier")
    period = period_of(datetime.now(UTC))
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    topic = INGEST.full_name(stack.settings.topic_prefix)
    worker = _worker(stack, "ingest-validator")
    worker.pause()
    try:
        producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                             "acks": "all"})
        for event in _events(700):
            producer.produce(topic, json.dumps(event).encode(), key=tenant.encode(),
                             headers=[("content-type", b"application/cloudevents+json"),
                                      ("meterly-key", key.encode())])
        assert producer.flush(30) == 0
        assert _counted(stack, key) == 0
        _close_now(stack, tenant, period)
        _held_by(stack, "ingest-validator", tenant, period)
    finally:
        worker.resume()
    invoice = wait_until("the invoice", lambda: _invoice(stack, tenant, period), timeout=120)
    assert _quantity(invoice, period) == 700


def _produce(stack: Stack, tenant: str, key: str, n: int) -> int:
    """``n`` events for ``tenant`` on the Kafka ingest topic, acknowledged."""
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all"})
    for event in _events(n):
        producer.produce(INGEST.full_name(stack.settings.topic_prefix),
                         json.dumps(event).encode(), key=tenant.encode(),
                         headers=[("content-type", b"application/cloudevents+json"),
                                  ("meterly-key", key.encode())])
    assert producer.flush(30) == 0
    return n


@pytest.mark.parametrize("paused", ["counter", "mirror", "ingest-validator"])
@pytest.mark.parametrize("round_", ROUNDS)
def test_the_scheduled_close_waits_for_a_stage_paused_under_load(
        stack: Stack, clock: Path, paused: str, round_: int) -> None:
    """Load from four senders (over HTTP, or on the Kafka ingest topic when the validator is
    the one paused); the worker is paused in the middle of it, so a backlog builds; the
    billing clock then passes the period's cut-off and the sweep (or, in later rounds, whose
    period is swept already, the reconciliation) writes the close. The invoice equals what
    was accepted."""
    tenant, key = stack.new_tenant(f"Scheduled {paused} {round_}", plan="barrier")
    period = period_of(datetime.now(UTC))
    worker = _worker(stack, paused)
    accepted: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            n = (_produce(stack, tenant, key, 200) if paused == "ingest-validator"
                 else _send(stack, key, 200))
            with lock:
                accepted.append(n)

    senders = [threading.Thread(target=load) for _ in range(4)]
    for s in senders:
        s.start()
    try:
        wait_until("load", lambda: len(accepted) >= 10, timeout=60)
        worker.pause()
        wait_until("a backlog", lambda: len(accepted) >= 30, timeout=60)
    finally:
        stop.set()
        for s in senders:
            s.join()
    try:
        total = sum(accepted)
        assert _counted(stack, key) < total
        asked = datetime.now(UTC)
        end = period_bounds(period)[1]
        clock.write_text((end + timedelta(hours=1, seconds=16)).isoformat())
        _held_by(stack, paused, tenant, period)
    finally:
        worker.resume()
    invoice = wait_until("the invoice", lambda: _invoice(stack, tenant, period), timeout=120)
    clock.write_text(datetime.now(UTC).isoformat())  # no period due for the next test
    assert _quantity(invoice, period) == total
    # The gateway's clock is the real one: the usage was complete when the close was read.
    assert parse_time(invoice["complete_through"]) >= asked

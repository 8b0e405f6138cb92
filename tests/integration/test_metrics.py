"""Prometheus metrics on the gateway and on every worker: present, and their values moving
with what the test makes happen, by the amounts it makes happen.

- the gateway's receipts and problems count the events and the refusal the test sends;
- the counter's and the mirror's lag gauges rise above 0 while each is paused with records
  waiting for it, and come back to 0 once it caught up;
- the dispatcher's attempt counter and dead-letter depth count the attempts and the dead
  letter of a receiver that refuses every connection;
- the billing worker's finalized-invoice counter and the renderer's PDF counter count the
  invoice of an on-demand close.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from schemas import usage_v1, webhooks_v1
from schemas.topics import USAGE, WEBHOOK_EVENTS
from schemas.usage_v1 import UsageEvent, UsageRecord
from tests.stack import (
    BILLING_WORKERS,
    CORE_WORKERS,
    Stack,
    free_port,
    start_stack,
    wait_for_usage,
    wait_until,
)
from tests.usage_load import WorkerProcess

pytestmark = pytest.mark.integration
WORKERS = (*CORE_WORKERS, *BILLING_WORKERS, "webhook-dispatcher")
#: More usage records than the counter takes in one batch (500), each for its own tenant, so
#: the changelog also gets more records than the mirror takes in one batch (5,000).
BACKLOG = 12_000


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("metrics"), gateways=1,
                     workers=WORKERS, metrics=True,
                     extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                                "METERLY_WEBHOOK_RETRY_SCHEDULE": "0.2"}) as running:
        for name in WORKERS:
            wait_until(f"{name} metrics", lambda port=running.metrics[name]: httpx.get(
                f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200,
                timeout=60)
        yield running


def sample(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``; 0 when absent."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            head = line.rsplit(" ", 1)[0]
            if all(w in head for w in wanted):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _metrics(stack: Stack, worker: str) -> str:
    return f"http://127.0.0.1:{stack.metrics[worker]}/metrics"


def _worker(stack: Stack, name: str) -> WorkerProcess:
    return next(w for w in stack.workers if w.name == name)


def test_gateway_counts_receipts_and_problems_exactly(stack: Stack) -> None:
    gateway = f"{stack.gateways[0].url}/metrics"
    before = {s: sample(gateway, "meterly_ingest_events_total", status=s)
              for s in ("accepted", "duplicate")}
    refused = sample(gateway, "meterly_http_problems_total", type="invalid-api-key")
    _tenant, key = stack.new_tenant("Metered")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    events = [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": "m", "type": "calls",
               "time": now, "data": {"quantity": 1}} for _ in range(20)]
    with stack.client(token=key) as client:
        answer = client.post("/v1/events", json=events + events[:5])
        assert answer.status_code == 200, answer.text
    assert (answer.json()["accepted"], answer.json()["duplicates"]) == (20, 5), answer.text
    assert httpx.get(f"{stack.gateways[0].url}/v1/usage", timeout=10,
                     headers={"Authorization": "Bearer mtr_nope"}).status_code == 401
    wait_for_usage(stack, key, {"calls": (20, "20")})
    assert sample(gateway, "meterly_ingest_events_total", status="accepted") == \
        before["accepted"] + 20
    assert sample(gateway, "meterly_ingest_events_total", status="duplicate") == \
        before["duplicate"] + 5
    assert sample(gateway, "meterly_http_problems_total", type="invalid-api-key") == \
        refused + 1


def test_lag_gauges_rise_while_paused_and_fall_when_caught_up(stack: Stack) -> None:
    assert stack.settings.kafka_bootstrap
    counter, mirror = _worker(stack, "counter"), _worker(stack, "mirror")
    counter_url, mirror_url = _metrics(stack, "counter"), _metrics(stack, "mirror")
    for url, gauge in ((counter_url, "meterly_counter_lag_records"),
                       (mirror_url, "meterly_mirror_lag_records")):
        wait_until(f"{gauge} at 0", lambda url=url, gauge=gauge: gauge in httpx.get(
            url, timeout=5).text and sample(url, gauge) == 0, timeout=60)
    commits = sample(counter_url, "meterly_transaction_commit_seconds_count")
    counter.pause()
    mirror.pause()
    try:
        producer = Producer({**client_config(stack.settings.kafka_bootstrap),
                             "enable.idempotence": True, "linger.ms": 20})
        topic = USAGE.full_name(stack.settings.topic_prefix)
        now_ms = int(time.time() * 1000)
        run = uuid.uuid4().hex[:6]
        for n in range(BACKLOG):
            tenant = f"lag-{run}-{n}"
            record = UsageRecord(tenant, (UsageEvent(f"e{n}", "m", "calls", now_ms,
                                                     Decimal(1)),))
            producer.produce(topic, usage_v1.encode(record), key=tenant.encode())
            producer.poll(0)
        assert producer.flush(60) == 0
        # Paused past the 5 s between each worker's lag measurements, so each measures at
        # its first turn after it resumes, with the backlog still in front of it.
        time.sleep(5.5)
    finally:
        counter.resume()
    # A scrape a fraction of a second apart cannot miss a value held for 5 s.
    seen = wait_until("the counter's lag above 0", lambda: (
        v if (v := sample(counter_url, "meterly_counter_lag_records")) > 0 else None),
        timeout=30, every=0.1)
    assert seen <= BACKLOG
    wait_until("the counter caught up", lambda: sample(
        counter_url, "meterly_counter_lag_records") == 0, timeout=90)
    assert sample(counter_url, "meterly_transaction_commit_seconds_count") > commits
    mirror.resume()
    wait_until("the mirror's lag above 0", lambda: sample(
        mirror_url, "meterly_mirror_lag_records") > 0, timeout=30, every=0.1)
    wait_until("the mirror caught up", lambda: sample(
        mirror_url, "meterly_mirror_lag_records") == 0, timeout=90)


def test_dispatcher_counts_attempts_and_dead_letters(stack: Stack) -> None:
    assert stack.settings.kafka_bootstrap
    url = _metrics(stack, "webhook-dispatcher")
    failed = sample(url, "meterly_webhook_attempts_total", outcome="failed")
    dead = sample(url, "meterly_webhook_attempts_total", outcome="dead_lettered")
    wait_until("the dead-letter depth gauge", lambda: "meterly_webhook_dead_letter_depth "
               in httpx.get(url, timeout=5).text, timeout=30)
    depth = sample(url, "meterly_webhook_dead_letter_depth")
    tenant, _key = stack.new_tenant("Unreachable")
    with stack.client() as admin:
        # Nothing listens on this port: every attempt is refused.
        made = admin.post(f"/v1/admin/tenants/{tenant}/webhooks",
                          json={"url": f"http://127.0.0.1:{free_port()}/hook"})
        assert made.status_code == 201, made.text
    producer = Producer(client_config(stack.settings.kafka_bootstrap))
    message = webhooks_v1.Message(f"msg_metrics_{uuid.uuid4().hex[:12]}",
                                  webhooks_v1.INVOICE_VOIDED, tenant,
                                  datetime.now(UTC).isoformat(), {})
    producer.produce(WEBHOOK_EVENTS.full_name(stack.settings.topic_prefix),
                     webhooks_v1.encode_message(message), key=tenant.encode())
    assert producer.flush(10) == 0
    # One retry in the schedule: the first attempt fails, the second is dead-lettered.
    wait_until("two attempts counted", lambda: sample(
        url, "meterly_webhook_attempts_total", outcome="dead_lettered") == dead + 1,
        timeout=60)
    assert sample(url, "meterly_webhook_attempts_total", outcome="failed") == failed + 1
    wait_until("the dead-letter depth up by one", lambda: sample(
        url, "meterly_webhook_dead_letter_depth") == depth + 1, timeout=40)


def test_billing_counts_finalized_invoices_and_rendered_pdfs(stack: Stack) -> None:
    finalized_url, rendered_url = _metrics(stack, "billing"), _metrics(stack, "invoice-renderer")
    finalized = sample(finalized_url, "meterly_invoices_finalized_total")
    rendered = sample(rendered_url, "meterly_invoice_pdfs_rendered_total")
    with stack.client() as admin:
        made = admin.post("/v1/admin/plans", json={
            "name": "metrics", "currency": "EUR", "flat_fee": "5.00", "prices": {}})
        assert made.status_code in (201, 409), made.text
    tenant, _key = stack.new_tenant("Billed", plan="metrics")
    period = period_of(datetime.now(UTC))
    with stack.client() as admin:
        closing = admin.post("/v1/admin/billing/close",
                             json={"period": period, "tenant_ids": [tenant]})
        assert closing.status_code == 202, closing.text

        def pdf() -> dict[str, Any] | None:
            docs = admin.get(f"/v1/admin/tenants/{tenant}/invoices").json()
            return next((d for d in docs if d.get("pdf_url")), None)

        wait_until("the invoice's PDF", pdf, timeout=120)
    assert sample(finalized_url, "meterly_invoices_finalized_total") == finalized + 1
    wait_until("the PDF counted", lambda: sample(
        rendered_url, "meterly_invoice_pdfs_rendered_total") == rendered + 1, timeout=30)

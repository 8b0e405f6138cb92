"""Prometheus metrics on the gateway and on every worker: present, and moving with traffic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from processors.runtime.settings import Settings
from tests.stack import (
    BILLING_WORKERS,
    CORE_WORKERS,
    Stack,
    start_stack,
    wait_for_usage,
    wait_until,
)

pytestmark = pytest.mark.integration
WORKERS = (*CORE_WORKERS, *BILLING_WORKERS, "webhook-dispatcher")


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("metrics"), gateways=1,
                              workers=WORKERS, metrics=True) as running:
        yield running


def sample(url: str, name: str) -> float:
    """Sum of a metric's samples named exactly ``name`` (any labels); 0 when absent."""
    total = 0.0
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_process_serves_metrics_that_move(stack: Stack) -> None:
    gateway = f"{stack.gateways[0].url}/metrics"
    for name in WORKERS:
        port = stack.metrics[name]
        wait_until(f"{name} metrics", lambda port=port: httpx.get(
            f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200, timeout=60)

    accepted = sample(gateway, "meterly_ingest_events_total")
    problems = sample(gateway, "meterly_http_problems_total")
    commits = sample(f"http://127.0.0.1:{stack.metrics['counter']}/metrics",
                     "meterly_transaction_commit_seconds_count")

    _tenant, key = stack.new_tenant("Metered")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    events = [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": "m", "type": "calls",
               "time": now, "data": {"quantity": 1}} for _ in range(20)]
    with stack.client(token=key) as client:
        assert client.post("/v1/events", json=events + events[:5]).status_code == 200
    assert httpx.get(f"{stack.gateways[0].url}/v1/usage",
                     headers={"Authorization": "Bearer mtr_nope"}, timeout=10).status_code == 401
    wait_for_usage(stack, key, {"calls": (20, "20")})

    assert sample(gateway, "meterly_ingest_events_total") >= accepted + 25
    assert sample(gateway, "meterly_http_problems_total") >= problems + 1
    wait_until("a counted transaction", lambda: sample(
        f"http://127.0.0.1:{stack.metrics['counter']}/metrics",
        "meterly_transaction_commit_seconds_count") > commits, timeout=30)
    counter = f"http://127.0.0.1:{stack.metrics['counter']}/metrics"
    wait_until("the counter lag gauge", lambda: "meterly_counter_lag_records " in httpx.get(
        counter, timeout=5).text, timeout=30)
    mirror = f"http://127.0.0.1:{stack.metrics['mirror']}/metrics"
    wait_until("the mirror lag gauge", lambda: "meterly_mirror_lag_records" in httpx.get(
        mirror, timeout=5).text, timeout=30)
    dispatcher = f"http://127.0.0.1:{stack.metrics['webhook-dispatcher']}/metrics"
    wait_until("the dead-letter depth gauge", lambda: "meterly_webhook_dead_letter_depth "
               in httpx.get(dispatcher, timeout=5).text, timeout=30)
    for worker, name in (("billing", "meterly_invoices_finalized_total"),
                         ("invoice-renderer", "meterly_invoice_pdfs_rendered_total"),
                         ("webhook-dispatcher", "meterly_webhook_attempts_total")):
        text = httpx.get(f"http://127.0.0.1:{stack.metrics[worker]}/metrics", timeout=5).text
        assert name.removesuffix("_total") in text, (worker, name)

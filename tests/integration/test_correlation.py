"""One correlation id per journey, visible in the logs of every hop.

Usage: the HTTP request's ``X-Correlation-Id`` -> the gateway -> the usage record's header
-> the counting worker. Billing: the close request's id -> the gateway -> the close command
-> the billing worker -> the invoice event -> the renderer -> the webhook message -> the
dispatcher. Workers run with ``METERLY_LOG_LEVEL=DEBUG`` (per-request and per-batch lines).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from tests.stack import (
    ALL_WORKERS,
    Stack,
    start_stack,
    wait_for_usage,
    wait_until,
)
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("journey"), gateways=1,
            workers=ALL_WORKERS,
            extra_env={"METERLY_LOG_LEVEL": "DEBUG",
                       "METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}) as running:
        yield running


def _logs(stack: Stack, name: str) -> str:
    if name == "gateway":
        return stack.gateways[0].log.read_text()
    worker = next(w for w in stack.workers if w.name == name)
    return worker.log.read_text()


def test_one_correlation_id_through_every_hop(stack: Stack) -> None:
    with stack.client() as admin:
        assert admin.post("/v1/admin/plans", json={
            "name": "journey", "currency": "EUR", "flat_fee": "5.00",
            "prices": {"calls": {"model": "per_unit", "unit_price": "0.10"}}}).status_code == 201
    tenant, key = stack.new_tenant("Journey AG", plan="journey")
    receiver = Receiver()
    try:
        receiver.start()
        with stack.client() as admin:
            assert admin.post(f"/v1/admin/tenants/{tenant}/webhooks",
                              json={"url": receiver.url}).status_code == 201

        usage_cid = f"cid-usage-{secrets.token_hex(6)}"
        with stack.client(token=key) as client:
            sent = client.post("/v1/events", headers={"X-Correlation-Id": usage_cid}, json=[{
                "specversion": "1.0", "id": "journey-1", "source": "journey", "type": "calls",
                "data": {"quantity": 3}}])
            assert sent.status_code == 200, sent.text
        wait_for_usage(stack, key, {"calls": (1, "3")})
        for hop in ("gateway", "counter"):
            wait_until(f"{usage_cid} in the {hop} log",
                       lambda hop=hop: usage_cid in _logs(stack, hop), timeout=30)

        close_cid = f"cid-close-{secrets.token_hex(6)}"
        with stack.client() as admin:
            closing = admin.post("/v1/admin/billing/close",
                                 headers={"X-Correlation-Id": close_cid},
                                 json={"period": period_of(datetime.now(UTC)),
                                       "tenant_ids": [tenant]})
            assert closing.status_code == 202, closing.text
        wait_until("invoice.finalized at the receiver", lambda: any(
            b'"invoice.finalized"' in r.body for r in receiver.received), timeout=90)
        for hop in ("gateway", "billing", "invoice-renderer", "webhook-dispatcher"):
            wait_until(f"{close_cid} in the {hop} log",
                       lambda hop=hop: close_cid in _logs(stack, hop), timeout=30)
    finally:
        receiver.close()

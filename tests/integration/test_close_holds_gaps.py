"""``METERLY_CLOSE_WITH_GAPS=hold``: a tenant whose producer has open sequence gaps is not
invoiced until they are filled (step 4 of the billing worker's protocol,
processors/billing/close_worker.py, with the closer's gap rule in processors/billing/
closer.py); the reconciliation closes it again once they are."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from tests.stack import CORE_WORKERS, Stack, start_stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("hold"), gateways=1,
                     workers=(*CORE_WORKERS, "billing"),
                     extra_env={"METERLY_CLOSE_WITH_GAPS": "hold",
                                "METERLY_INVOICE_PREFIX": "HLD"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json={
                "name": "hold", "currency": "EUR",
                "prices": {"calls": {"model": "per_unit", "unit_price": "0.01"}}})
            assert made.status_code == 201, made.text
        yield running


def _send(stack: Stack, key: str, numbers: list[int]) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    with stack.client(token=key) as client:
        answer = client.post("/v1/events", json=[
            {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "exporter",
             "type": "calls", "time": now, "sequence": n} for n in numbers])
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(numbers)


def test_a_close_is_held_while_a_producer_has_gaps(stack: Stack) -> None:
    tenant, key = stack.new_tenant("Held GmbH", plan="hold")
    _send(stack, key, [1, 2, 5])
    with stack.client(token=key) as client:
        wait_until("the gap", lambda: client.get("/v1/usage/gaps").json()["open_gaps"] == 1,
                   timeout=60)
    period = period_of(datetime.now(UTC))

    def close() -> str:
        with stack.client() as admin:
            answer = admin.post("/v1/admin/billing/close", json={"period": period,
                                                               "tenant_ids": [tenant]})
        assert answer.status_code == 202, answer.text
        invoice: str = answer.json()["invoices"][tenant]
        return invoice

    def status(invoice: str) -> str | None:
        with stack.client() as admin:
            answer = admin.get(f"/v1/admin/tenants/{tenant}/invoices/{invoice}")
        doc: dict[str, Any] = answer.json()
        return doc.get("status") if answer.status_code == 200 else None

    invoice = close()
    log = next(w for w in stack.workers if w.name == "billing").log
    wait_until("the close held", lambda: "held: producer sequence gaps open" in
               log.read_text(), timeout=60)
    # The hold is logged at the end of the close call, after its drafts were stored: a
    # held tenant got none.
    assert status(invoice) is None  # no draft, no number

    _send(stack, key, [3, 4])
    with stack.client(token=key) as client:
        wait_until("the gap filled",
                   lambda: client.get("/v1/usage/gaps").json()["open_gaps"] == 0, timeout=60)
    assert close() == invoice
    wait_until("the invoice", lambda: status(invoice) == "finalized", timeout=90)

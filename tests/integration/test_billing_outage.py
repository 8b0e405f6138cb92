"""Every period billed: an outage across a whole period, a lost close, a lost PDF.

Its own stack (the counter, mirror and billing workers, a gateway) whose billing clock the
tests move (``METERLY_CLOCK_FILE``), with a reconciliation delay of seconds instead of
minutes. Each test names the step of the billing worker's protocol it attacks
(processors/billing/close_worker.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session

from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas.topics import BILLING_COMMANDS
from tests.stack import BILLING_WORKERS, CORE_WORKERS, Stack, start_stack, wait_until

pytestmark = pytest.mark.integration
PLAN = {"name": "outage", "currency": "EUR", "flat_fee": "30.00",
        "prices": {"calls": {"model": "per_unit", "unit_price": "0.01"}}}


@pytest.fixture(scope="module")
def stack(settings: Settings, clock: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    clock.write_text(datetime.now(UTC).isoformat())  # no period due yet
    with start_stack(
            settings, tmp_path_factory.mktemp("outage"), gateways=1,
            workers=CORE_WORKERS + BILLING_WORKERS,
            extra_env={"METERLY_CLOCK_FILE": str(clock), "METERLY_BILLING_TICK_SECONDS": "0.5",
                       "METERLY_BILLING_RECONCILE_SECONDS": "3",
                       "METERLY_INVOICE_PREFIX": "OUT"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json=PLAN)
            assert made.status_code == 201, made.text
        yield running


def _after_close_of(period: str) -> datetime:
    return period_bounds(period)[1] + timedelta(hours=1, seconds=16)


def _next(period: str) -> str:
    return period_of(period_bounds(period)[1])


def _finalized(stack: Stack, tenant: str) -> dict[str, dict[str, Any]]:
    with stack.client() as admin:
        docs = admin.get(f"/v1/admin/tenants/{tenant}/invoices").json()
    return {d["period"]: d for d in docs if d["status"] == "finalized" and d["pdf_url"]}


def test_an_outage_across_a_whole_period_bills_both_periods(stack: Stack, clock: Path) -> None:
    """The sweep: the billing clock jumps from before this period's close to after the
    next one's, as if billing had been down for a month. Both periods are invoiced."""
    tenant, _key = stack.new_tenant("Outage GmbH", plan="outage")
    this = period_of(datetime.now(UTC))
    following = _next(this)
    clock.write_text(_after_close_of(following).isoformat())
    found = wait_until("both invoices", lambda: (
        docs := _finalized(stack, tenant)) and {this, following} <= set(docs) and docs,
        timeout=120)
    assert found[this]["number"] != found[following]["number"]
    # A month in force in full: the flat fee in full (the first month is prorated).
    assert found[following]["subtotal"]["amount"] == "30.00"


def test_a_period_swept_without_its_closes_is_reconciled(stack: Stack, clock: Path,
                                                        cassandra_session: Session) -> None:
    """Attacks step 1 of the agent's protocol from outside: the run is recorded but its
    close commands never arrive (as when Faust skips records). The reconciliation finds the
    tenant without an invoice and enqueues its close again."""
    tenant, _key = stack.new_tenant("Lost Close Ltd", plan="outage")
    period = _next(_next(period_of(datetime.now(UTC))))
    run = f"{BILLING_COMMANDS.full_name(stack.settings.topic_prefix)}:{period}"
    cassandra_session.execute(
        f"INSERT INTO {stack.settings.cassandra_keyspace}.billing_runs "
        "(period, enqueued, started_at) VALUES (%s, %s, %s)", (run, 1, datetime.now(UTC)))
    clock.write_text(_after_close_of(period).isoformat())
    wait_until("the reconciled invoice", lambda: period in _finalized(stack, tenant),
               timeout=120)


def test_an_invoice_whose_pdf_was_lost_is_rendered_again(stack: Stack, clock: Path,
                                                         cassandra_session: Session) -> None:
    """Attacks step 7: the invoice is numbered but its invoice.finalized never reached the
    renderer. The reconciliation enqueues the close again, which announces it again."""
    tenant, _key = stack.new_tenant("Lost Pdf SA", plan="outage")
    period = _next(_next(_next(period_of(datetime.now(UTC)))))
    clock.write_text(_after_close_of(period).isoformat())
    first = wait_until("the invoice", lambda: _finalized(stack, tenant).get(period),
                       timeout=120)
    keyspace = stack.settings.cassandra_keyspace
    cassandra_session.execute(
        f"UPDATE {keyspace}.invoices SET pdf_key = null, pdf_sha256 = null "
        "WHERE tenant_id = %s AND id = %s", (tenant, first["id"]))
    assert period not in _finalized(stack, tenant)
    again = wait_until("the PDF again", lambda: _finalized(stack, tenant).get(period),
                       timeout=120)
    assert again["number"] == first["number"]
    assert again["pdf_sha256"] == first["pdf_sha256"]  # the same bytes

"""Two billing workers close 10,000 tenants while one of them is SIGKILLed three times.

The sweep (the leader's timer) writes the 10,000 close commands; a Faust worker killed in
the middle of its batches leaves uncommitted commands, claims and unannounced invoices
behind, and a command Faust's at-least-once delivery skipped would never be retried without
the reconciliation. Attacks steps 1 and 6 to 8 of the billing worker's protocol
(processors/billing/close_worker.py) and the reconciliation after the sweep. Every
subscribed tenant must end with one finalized invoice, numbered without a gap, and its PDF.
Runs twice, each on fresh topics.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cassandra.cluster import Session

from ops.topics import ensure_topics
from processors.billing.core.invoice import invoice_id
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of, previous_period
from schemas.topics import ADMIN
from tests.kafka_helpers import subscribe_on_admin_topic
from tests.usage_load import WorkerProcess, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TENANTS = 10_000


def _closed_batches(worker: WorkerProcess) -> int:
    return worker.log.read_text().count('"periods closed"')


@pytest.mark.parametrize("round_", [1, 2])
def test_every_tenant_is_invoiced_with_its_pdf_though_a_billing_worker_dies_three_times(
        settings: Settings, cassandra_session: Session, tmp_path: Path, round_: int) -> None:
    assert settings.kafka_bootstrap
    prefix = f"{settings.topic_prefix}k{secrets.token_hex(3)}."
    ensure_topics(settings.kafka_bootstrap, prefix, 1)
    period = previous_period(period_of(datetime.now(UTC)))
    start, end = period_bounds(period)
    tenants = [f"ten_{secrets.token_hex(6)}" for _ in range(TENANTS)]
    subscribe_on_admin_topic(settings.kafka_bootstrap, ADMIN.full_name(prefix), tenants, start)
    clock = tmp_path / "clock"
    clock.write_text((end + timedelta(hours=1, seconds=16)).isoformat())
    invoice_prefix = f"K{secrets.token_hex(3).upper()}"
    scoped = settings.model_copy(update={"topic_prefix": prefix})
    env = {"METERLY_INVOICE_PREFIX": invoice_prefix, "METERLY_ADMIN_TOKEN": "x" * 32,
           "METERLY_CLOCK_FILE": str(clock), "METERLY_BILLING_TICK_SECONDS": "1",
           "METERLY_BILLING_RECONCILE_SECONDS": "20"}
    billing = [WorkerProcess("billing", {**worker_env(scoped, tmp_path / f"b{i}", str(i)),
                                         **env}, tmp_path / f"billing-{i}.log")
               for i in (1, 2)]
    renderers = [WorkerProcess("invoice-renderer",
                               {**worker_env(scoped, tmp_path / f"r{i}", str(i)), **env},
                               tmp_path / f"renderer-{i}.log") for i in (1, 2)]
    for worker in (*billing, *renderers):
        worker.start()
    victim = billing[1]
    store = InvoiceStore(cassandra_session, settings.cassandra_keyspace)
    refs = [(t, invoice_id(t, period)) for t in tenants]
    try:
        deadline = time.monotonic() + 120
        while not all(_closed_batches(w) for w in billing):
            assert time.monotonic() < deadline, "both billing workers never closed a batch"
            time.sleep(0.5)
        for _ in range(3):
            victim.kill()
            assert victim.proc is not None
            assert victim.proc.wait(10) == -9  # it died of the SIGKILL, mid-close
            time.sleep(1.0)
            victim.start()
            time.sleep(3.0)
        deadline = time.monotonic() + 420
        docs = store.get_many(refs)
        while time.monotonic() < deadline:
            docs = store.get_many(refs)
            if all(d is not None and d.number and d.pdf_sha256 for d in docs):
                break
            time.sleep(2)
        missing = [t for t, d in zip(tenants, docs, strict=True)
                   if d is None or not d.number or not d.pdf_sha256]
        logs = "\n".join(w.log.read_text()[-1500:] for w in (*billing, *renderers))
        assert not missing, f"{len(missing)} tenants without an invoice and its PDF\n{logs}"
        numbers = sorted(int((d.number or "").rsplit("-", 1)[1]) for d in docs if d)
        assert numbers == list(range(1, TENANTS + 1))
        assert victim.kills == 3
    finally:
        for worker in (*billing, *renderers):
            worker.stop()

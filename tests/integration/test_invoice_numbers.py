"""Gapless invoice numbers under concurrency and crashes, on the real Cassandra node.

Two levels: several threads numbering overlapping sets of invoices at once (one of them
dying between its claim and writing the numbers), and two billing worker processes closing
hundreds of tenants from the same command topic while one of them is SIGKILLed.
"""

from __future__ import annotations

import random
import secrets
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from cassandra.cluster import Session

from ops.topics import ensure_topics
from processors.billing.core.invoice import (
    BillingParty,
    Party,
    PlanAssignment,
    compose_invoice,
)
from processors.billing.core.pricing import Plan
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds
from tests.numbering import check_kill_evidence, close_concurrently_with_a_kill, sequence_numbers

pytestmark = pytest.mark.integration

D = Decimal
PERIOD = "2026-10"
FLAT = Plan("flat", 1, "EUR", {}, flat_fee=D(10))


@pytest.fixture(scope="module")
def session(cassandra_session: Session) -> Session:
    return cassandra_session


def _drafts(store: InvoiceStore, n: int) -> list[tuple[str, str]]:
    start, _ = period_bounds(PERIOD)
    docs = []
    for i in range(n):
        party = BillingParty(f"t{secrets.token_hex(4)}-{i}", "EUR", Party(f"Tenant {i}"))
        doc = compose_invoice(party, Party("Seller"), PERIOD, [PlanAssignment(start, FLAT)], {},
                              datetime(2026, 11, 1, 2, tzinfo=UTC))
        assert doc is not None
        docs.append(doc)
    stored = store.save_drafts(docs)
    return [(d.tenant_id, d.id) for d in stored]





class CrashAfterClaim(InvoiceNumbers):
    """Claims a batch, then dies before writing any of its numbers."""

    def _complete(self, year: int, pending: list[str], first: int,  # type: ignore[override]
                  at: datetime) -> None:
        raise RuntimeError("killed between claim and numbering")


def test_threads_number_overlapping_sets_without_gaps(settings: Settings,
                                                      session: Session) -> None:
    store = InvoiceStore(session, settings.cassandra_keyspace)
    prefix = f"T{secrets.token_hex(3).upper()}"
    refs = _drafts(store, 300)
    at = datetime(2026, 11, 1, 2, tzinfo=UTC)

    # A claimer that dies right after its claim leaves a pending batch behind.
    crashed = refs[:7]
    with pytest.raises(RuntimeError):
        CrashAfterClaim(session, store, prefix).assign(crashed, at)
    assert store.numbers_of(crashed) == [None] * len(crashed)

    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine = refs[:]
        rng.shuffle(mine)
        numbers = InvoiceNumbers(session, store, prefix)
        try:
            for start in range(0, len(mine), 25):
                numbers.assign(mine[start:start + 25], at)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sequence_numbers(store, refs, prefix, 2026) == list(range(1, len(refs) + 1))
    # The crashed claim's invoices were numbered first, by whoever claimed next.
    assert sequence_numbers(store, crashed, prefix, 2026) == list(range(1, len(crashed) + 1))


def test_two_billing_workers_close_concurrently_with_a_kill(
        settings: Settings, session: Session, tmp_path: Path) -> None:
    """Attacks steps 6 to 8 of the billing worker's protocol (processors/billing/
    close_worker.py): a worker SIGKILLed while it numbers a stream of commands leaves
    claims and uncommitted commands behind; the other worker and its restart must number
    every invoice once, with no gap."""
    assert settings.kafka_bootstrap
    scoped = settings.model_copy(
        update={"topic_prefix": f"{settings.topic_prefix}n{secrets.token_hex(3)}."})
    ensure_topics(settings.kafka_bootstrap, scoped.topic_prefix, 1)
    tenants = [f"ten_{secrets.token_hex(6)}" for _ in range(600)]
    evidence = close_concurrently_with_a_kill(
        scoped, session, tmp_path, tenants, f"W{secrets.token_hex(3).upper()}")
    check_kill_evidence(evidence)

"""Gapless invoice numbers under concurrency and crashes, on the real Cassandra node.

Two levels: several threads numbering overlapping sets of invoices at once (one of them
dying between its claim and writing the numbers), and two billing worker processes closing
hundreds of tenants from the same command topic while one of them is SIGKILLed.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
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
    invoice_id,
)
from processors.billing.core.pricing import Plan
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas import billing_commands_v1
from schemas.topics import ADMIN, BILLING_COMMANDS
from tests.kafka_helpers import subscribe_on_admin_topic
from tests.usage_load import WorkerProcess, worker_env

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


def _sequence_numbers(store: InvoiceStore, refs: list[tuple[str, str]], prefix: str) -> list[int]:
    numbers = store.numbers_of(refs)
    assert all(n is not None for n in numbers), "some invoices were never numbered"
    assert all(n.startswith(f"{prefix}-2026-") for n in numbers if n)
    return sorted(int(n.rsplit("-", 1)[1]) for n in numbers if n)


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
    assert _sequence_numbers(store, refs, prefix) == list(range(1, len(refs) + 1))
    # The crashed claim's invoices were numbered first, by whoever claimed next.
    assert _sequence_numbers(store, crashed, prefix) == list(range(1, len(crashed) + 1))


def test_two_billing_workers_close_concurrently_with_a_kill(
        settings: Settings, session: Session, tmp_path: Path) -> None:
    """Attacks steps 6 to 8 of the billing worker's protocol (processors/billing/
    close_worker.py): a worker SIGKILLed while it numbers a batch leaves claims and
    uncommitted commands behind; the other worker and its restart must number every
    invoice once, with no gap."""
    assert settings.kafka_bootstrap
    prefix_topics = f"{settings.topic_prefix}n{secrets.token_hex(3)}."
    ensure_topics(settings.kafka_bootstrap, prefix_topics, 1)
    invoice_prefix = f"W{secrets.token_hex(3).upper()}"
    period = period_of(datetime.now(UTC))
    start, _end = period_bounds(period)
    tenants = [f"ten_{secrets.token_hex(6)}" for _ in range(600)]

    admin_producer = subscribe_on_admin_topic(settings.kafka_bootstrap,
                                              ADMIN.full_name(prefix_topics), tenants, start)

    workers = []
    for i in (1, 2):
        env = {**worker_env(settings.model_copy(update={"topic_prefix": prefix_topics}),
                            tmp_path / f"home{i}", str(i)),
               "METERLY_INVOICE_PREFIX": invoice_prefix, "METERLY_ADMIN_TOKEN": "x" * 32}
        worker = WorkerProcess("billing", env, tmp_path / f"billing-{i}.log")
        worker.start()
        workers.append(worker)
    try:
        time.sleep(8)  # both join the group before the commands arrive
        commands = BILLING_COMMANDS.full_name(prefix_topics)

        def send(batch: list[str]) -> None:
            for index, tenant in enumerate(batch):
                admin_producer.produce(commands, billing_commands_v1.encode(
                    billing_commands_v1.CloseCommand(tenant, period, "operator")),
                    key=tenant.encode())
                if index % 20 == 19:
                    admin_producer.flush(10)
                    time.sleep(0.05)
            assert admin_producer.flush(30) == 0

        def closed(worker: WorkerProcess) -> int:
            return sum(json.loads(line)["invoices"]
                       for line in worker.log.read_text().splitlines()
                       if '"periods closed"' in line)

        # Closes go out 20 at a time until both workers have numbered some (the first
        # batches may all reach one worker while the group is still balancing): the claims
        # below were made concurrently, and the kill lands on a worker that was numbering.
        sent = 0
        while not all(closed(w) for w in workers):
            assert sent < len(tenants) // 2, "the second billing worker never closed a period"
            send(tenants[sent:sent + 20])
            sent += 20
            time.sleep(1.0)
        workers[1].kill()
        assert workers[1].proc is not None
        assert workers[1].proc.wait(10) == -9  # it died of the SIGKILL
        send(tenants[sent:])
        time.sleep(2)
        workers[1].start()

        store = InvoiceStore(session, settings.cassandra_keyspace)
        refs = [(t, invoice_id(t, period)) for t in tenants]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if all(n is not None for n in store.numbers_of(refs)):
                break
            time.sleep(1)
        logs = "\n".join(w.log.read_text()[-2000:] for w in workers)
        assert _sequence_numbers(store, refs, invoice_prefix) == list(
            range(1, len(tenants) + 1)), logs
    finally:
        for worker in workers:
            worker.stop()

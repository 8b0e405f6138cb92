"""Two billing workers close 10,000 tenants while one of them dies three times, each at a
named step of the billing worker's protocol (processors/billing/close_worker.py):

1. ``billing.after-store``: drafts stored (step 5), nothing numbered;
2. ``billing.after-claim``: a number claim recorded with its batch pending (step 6, part way:
   the numbers are not on the invoices yet; the next claimer must complete the batch);
3. ``billing.after-announce``: ``invoice.finalized`` sent (step 7), Faust's commit (8) not
   reached, so the batch is redelivered and announced again.

Each failpoint fires on the n-th arrival of one launch (n from the seed) and the worker is
restarted, as ``meterly run`` would, into the next armed launch, then a clean one. Each fault
must land while tenants are still without an invoice (mid-close), and the victim must close
batches again after each restart. The sweep writes the 10,000 close commands; the
reconciliation re-enqueues any close Faust skipped. Every subscribed tenant must end with one
finalized invoice, numbered without a gap, and its PDF. Runs twice, on fresh topics.
"""

from __future__ import annotations

import json
import random
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
from tests.faults import log_has, seed_for
from tests.kafka_helpers import subscribe_on_admin_topic
from tests.usage_load import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TENANTS = 10_000


STEPS = ("billing.after-store", "billing.after-claim", "billing.after-announce")


def _closed_batches(worker: WorkerProcess, since: int = 0) -> int:
    return worker.log.read_bytes()[since:].count(b'"periods closed"')


def _times(worker: WorkerProcess, text: str) -> list[str]:
    """The ``ts`` of the worker's JSON log lines holding ``text`` (RFC 3339 with the same
    offset throughout, so they compare as text)."""
    return [json.loads(line)["ts"] for line in worker.log.read_text().splitlines()
            if text in line and line.startswith("{")]


def _numbered(store: InvoiceStore, refs: list[tuple[str, str]]) -> int:
    return sum(1 for d in store.get_many(refs) if d is not None and d.number)


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
    victim = billing[1]
    seed = seed_for("billing-kills")
    rng = random.Random(seed)
    # The n-th batch of a launch (each launch closes a few of the 20 batches of 500).
    victim.arm(*(f"{step}@{rng.randint(1, 2)}" for step in STEPS))
    for worker in (*billing, *renderers):
        worker.start()
    store = InvoiceStore(cassandra_session, settings.cassandra_keyspace)
    refs = [(t, invoice_id(t, period)) for t in tenants]
    try:
        since = 0
        for n, step in enumerate(STEPS, start=1):
            wait_for(lambda step=step, since=since: log_has(
                victim, f"failpoint {step} reached", since), 180, f"the failpoint {step}")
            # From just after that line: the dead launch wrote nothing more, and the next
            # launch may have reached its own failpoint by the time this loop looks again.
            line = f"failpoint {step} reached".encode()
            since = victim.log.read_bytes().index(line, since) + len(line)
            print(f"{step} landed with {_numbered(store, refs)}/{TENANTS} invoices numbered")
            # Restarted (and, the next failpoint being quick, maybe past it already: the
            # count of restarts is checked exactly at the end).
            wait_for(lambda n=n: victim.restarts >= n and victim.alive(), 30,
                     f"the restart after {step}")
            # The restarted worker works: it closes batches again (its share after the
            # rebalance) before its next failpoint, or, after the last, before the end.
            wait_for(lambda since=since: _closed_batches(victim, since) > 0 or log_has(
                victim, "failpoint", since) or _numbered(store, refs) == TENANTS, 180,
                f"the victim to close again after {step}")
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
        assert victim.restarts == len(STEPS)  # its three failpoints, nothing else
        assert billing[0].restarts == 0
        assert _closed_batches(billing[0]) > 0  # both workers closed and numbered
        assert _closed_batches(victim) > 0
        # Mid-stream: after each failpoint, closes still came (the dead launch's batch was
        # uncommitted, so it was closed again, and the rest of the stream with it).
        closes = [t for w in billing for t in _times(w, '"periods closed"')]
        for step in STEPS:
            [at] = _times(victim, f"failpoint {step} reached")
            later = sum(t > at for t in closes)
            assert later > 0, f"no close after {step}: it landed after the work was done"
            print(f"{step}: {later} batches closed after it")
    finally:
        for worker in (*billing, *renderers):
            worker.stop()

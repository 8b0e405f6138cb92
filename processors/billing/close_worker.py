"""The billing agent (Faust): closes each tenant's monthly window once its grace has passed.

Two parts in one app:

- A timer on the Faust leader (``Billing.sweep``): for every period whose end plus grace
  has passed (by the worker's ``Clock``) and that no run has swept yet, oldest first (a
  billing outage across whole periods bills them all), it enqueues one close command per
  subscribed tenant on ``billing-commands.v1``, waits for Kafka's acknowledgement, and
  only then records the run in Cassandra, so a period is swept once (a crash in between
  sweeps it again, which the closer's idempotence absorbs). Then it reconciles
  (``Billing.reconcile``): for the due period and the one before, once their closes have
  had ``METERLY_BILLING_RECONCILE_SECONDS``, every tenant the close covers that still has
  no finalized invoice, or no PDF, gets its close enqueued again (a command Faust skipped,
  an announcement that never reached the renderer). Operators enqueue the same commands on
  demand (``POST /v1/admin/billing/close``, ``meterly billing close``).
- An agent on that topic, keyed by tenant (so one tenant's closes run in order on one
  worker). Protocol, per batch of commands (``PeriodCloser.close``):

  1. Decode the commands (an unreadable one is skipped, ``schemas.topics``).
  2. The close barrier (``Billing.until_complete``): wait until every event accepted before
     the newest command was written is counted and mirrored
     (``processors.usage.completeness``). The sweep writes a period's commands only after
     its end, its grace and ``METERLY_CLOSE_SETTLE_SECONDS`` (the gateways' delivery
     timeout and clock skew), so the whole period's usage is in. While it waits it says
     why: log, ``meterly_billing_closes_waiting``, ``meterly billing status``.
  3. Read the tenants' invoices and the counters of the period and of the invoiced periods
     late usage may reach, from Cassandra (LOCAL_QUORUM).
  4. Compose each tenant's draft from a snapshot of its directory records (pure,
     ``processors.billing.core.close``), with the barrier's instant as its
     ``complete_through``; an invoice already numbered is left as it is.
  5. Store the drafts (created once per tenant and period, refreshed until numbered).
  6. Number them gaplessly (``processors.billing.invoice_numbers``: a claim that records
     its batch, so a claimer that dies leaves no gap).
  7. Send ``invoice.finalized`` for every numbered invoice without a PDF yet, and wait for
     Kafka's acknowledgement.
  8. Faust commits the batch's offsets.

  A crash before 8 redelivers the batch: the invoice id is derived from tenant and period,
  a numbered invoice never changes, and 7 sends the same events again (the renderer is
  idempotent). Faust's at-least-once delivery is therefore exact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from prometheus_client import Counter, Gauge

from processors.billing.closer import PeriodCloser, scheduled_commands
from processors.billing.core.close import (
    due_period,
    first_period,
    periods_to_sweep,
    tenants_to_close,
    unfinished,
)
from processors.billing.core.invoice import invoice_id
from processors.billing.inputs import seller_of
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.faust_app import (
    bytes_topic,
    dead_letter_of,
    event_place,
    faust_app,
    header_cid,
    run_app,
)
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record
from processors.kafka.transactions import exit_now, idempotent_producer
from processors.runtime.clock import Clock, clock_from
from processors.runtime.settings import Settings
from processors.tenants.follower import follow_admin
from processors.usage.completeness import Completeness
from processors.usage.core.completeness import BarrierState
from processors.usage.core.periods import previous_period
from processors.usage.mirror_table import UsageTable
from processors.usage.progress_table import ProgressTable
from schemas import billing_commands_v1
from schemas.billing_commands_v1 import CloseCommand
from schemas.topics import ADMIN, BILLING_COMMANDS, INVOICES
from storage.cassandra import connect

log = logging.getLogger(__name__)
BATCH = 500
RECONCILED = Counter("meterly_billing_reconciled_total",
                     "closes enqueued again by the reconciliation: a tenant of a closed period "
                     "without a finalized invoice, or without its PDF", ["missing"])
WAITING = Gauge("meterly_billing_closes_waiting",
                "close commands held until their usage is complete (the close barrier)")


class Billing:
    """What the billing worker holds: the directory, the closer and the run ledger."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        assert settings.kafka_bootstrap
        assert settings.cassandra_hosts
        self.settings = settings
        self.clock = clock
        self.grace = timedelta(seconds=settings.grace_seconds)
        self.settle = timedelta(seconds=settings.close_settle_seconds)
        prefix = settings.topic_prefix
        self.commands_topic = BILLING_COMMANDS.full_name(prefix)
        self.directory, self.admin_topic = follow_admin(settings.kafka_bootstrap,
                                                        ADMIN.full_name(prefix))
        self.cluster, session = connect(settings.cassandra_hosts,
                                        security=settings.cassandra_security)
        keyspace = settings.cassandra_keyspace
        store = InvoiceStore(session, keyspace)
        self.producer = idempotent_producer(settings.kafka_bootstrap)
        self.closer = PeriodCloser(
            self.directory, UsageTable(session, keyspace), store,
            InvoiceNumbers(session, store, settings.invoice_prefix), self.producer,
            INVOICES.full_name(prefix), seller_of(settings), settings.payment_terms_days,
            settings.close_with_gaps)
        self._session = session
        self.progress = ProgressTable(session, keyspace, prefix)
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.closes_waiting = 0
        self.completeness = Completeness(settings.kafka_bootstrap, prefix, self._publish)
        self._run_done = session.prepare(
            f"SELECT enqueued FROM {keyspace}.billing_runs WHERE period = ?")
        self._run_started = session.prepare(
            f"SELECT started_at FROM {keyspace}.billing_runs WHERE period = ?")
        self._next_reconcile = time.monotonic() + settings.billing_reconcile_seconds
        self._run_record = session.prepare(
            f"INSERT INTO {keyspace}.billing_runs (period, enqueued, started_at) "
            "VALUES (?, ?, ?)")

    def start(self) -> None:
        self.admin_topic.start()
        self.completeness.start()

    def stop(self) -> None:
        self.completeness.stop()
        self.admin_topic.stop()
        self.producer.flush(10)
        self.cluster.shutdown()

    def sweep(self) -> int:
        """Enqueue the closes of every due period not swept yet, oldest first (a billing
        outage across whole periods bills them all), then reconcile; return how many
        closes were enqueued."""
        due = due_period(self.clock(), self.grace, self.settle)
        enqueued = 0
        for period in periods_to_sweep(due, self._swept,
                                       first_period(self.directory.subscriptions())):
            commands = scheduled_commands(self.directory, period)
            self._enqueue(commands)
            self._session.execute(self._run_record,
                                  (self._run(period), len(commands), datetime.now(UTC)))
            log.info("period close scheduled", extra={"period": period,
                                                      "tenants": len(commands)})
            enqueued += len(commands)
        self.reconcile(due)
        return enqueued

    def _publish(self, state: BarrierState) -> None:
        try:
            self.progress.write(self.worker, state, self.closes_waiting)
        except Exception as exc:  # noqa: BLE001 - a status row is not worth a restart
            log.warning("close barrier status not stored: %s", exc)

    async def until_complete(self, requested: datetime, commands: int) -> datetime:
        """Hold a batch of closes until every event accepted before ``requested`` (when
        the newest command was written) is counted and mirrored; say why while waiting.
        Returns the instant the barrier proved."""
        started = time.monotonic()
        said = 0.0
        while not self.completeness.reached(requested):
            self.closes_waiting = commands
            WAITING.set(commands)
            if time.monotonic() - said >= 30:
                state = self.completeness.state()
                log.warning("close waiting for complete usage", extra={
                    "closes": commands, "stage": state.stage, "records_behind": state.behind,
                    "complete_through": state.complete_through.isoformat()
                    if state.complete_through else None,
                    "waited_seconds": round(time.monotonic() - started, 1)})
                said = time.monotonic()
            await asyncio.sleep(0.2)
        self.closes_waiting = 0
        WAITING.set(0)
        proven = self.completeness.state().complete_through
        assert proven is not None
        return proven

    def _run(self, period: str) -> str:
        # A run is per deployment (its topics), so deployments sharing a keyspace, as test
        # runs do, never suppress each other's closes.
        return f"{self.commands_topic}:{period}"

    def _swept(self, period: str) -> bool:
        return self._session.execute(self._run_done, (self._run(period),)).one() is not None

    def _enqueue(self, commands: Sequence[CloseCommand]) -> None:
        for command in commands:
            self.producer.produce(self.commands_topic, billing_commands_v1.encode(command),
                                  key=command.tenant_id.encode())
            self.producer.poll(0)
        if self.producer.flush(30):
            raise RuntimeError("close commands not acknowledged by Kafka")

    def reconcile(self, due: str) -> int:
        """For the due period and the one before, once their closes have had
        ``billing_reconcile_seconds``: compare the tenants the close covers with their
        invoices, and enqueue the close again for every tenant still without a finalized
        invoice or its PDF (a close is idempotent; it announces an invoice without a PDF
        again). Returns how many closes were enqueued again."""
        now = time.monotonic()
        if now < self._next_reconcile:
            return 0
        self._next_reconcile = now + self.settings.billing_reconcile_seconds
        after = timedelta(seconds=self.settings.billing_reconcile_seconds)
        redone = 0
        for period in (previous_period(due), due):
            run = self._session.execute(self._run_started, (self._run(period),)).one()
            if run is None or datetime.now(UTC) - _utc(run.started_at) < after:
                continue
            tenants = tenants_to_close(self.directory.subscriptions(), period)
            docs = self.closer.store.get_many([(t, invoice_id(t, period)) for t in tenants])
            unclosed, unrendered = unfinished(tenants, docs)
            if not unclosed and not unrendered:
                continue
            RECONCILED.labels("invoice").inc(len(unclosed))
            RECONCILED.labels("pdf").inc(len(unrendered))
            log.warning("closes enqueued again", extra={
                "period": period, "without_invoice": len(unclosed),
                "without_pdf": len(unrendered)})
            self._enqueue([CloseCommand(t, period, "reconcile")
                           for t in [*unclosed, *unrendered]])
            redone += len(unclosed) + len(unrendered)
        return redone


def _utc(moment: datetime) -> datetime:
    # The driver returns naive UTC datetimes.
    return moment.replace(tzinfo=UTC)


def build_app(settings: Settings, billing: Billing) -> faust.App:
    app = faust_app(
        settings, "billing", leader=True,
        # A dead worker's partitions move to the others after this many seconds.
        broker_session_timeout=10, broker_heartbeat_interval=3)
    topic = bytes_topic(app, billing.commands_topic)
    assert settings.kafka_bootstrap
    dead_letters = DeadLetters(settings.kafka_bootstrap, settings.topic_prefix, "billing")

    @app.agent(topic)
    async def close_periods(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(BATCH, within=1.0):
            try:
                commands = []
                for e in events:
                    if e.value is None:
                        continue
                    try:
                        command = billing_commands_v1.decode(e.value)
                    except DECODE_ERRORS as exc:
                        invalid_record(BILLING_COMMANDS, event_place(e), exc,
                                       dead_letter_of(dead_letters, e))
                        continue
                    commands.append(replace(command, correlation_id=header_cid(e)))
                # Kept before these events are acknowledged (and their offsets committed).
                await loop.run_in_executor(None, dead_letters.flush)
                if not commands:
                    continue
                # The close barrier: nothing is read before the usage accepted until the
                # newest command was written is counted and mirrored.
                written = max(e.message.timestamp for e in events)
                proven = await billing.until_complete(
                    datetime.fromtimestamp(written, UTC), len(commands))
                # The Cassandra driver blocks; keep Faust's event loop (and heartbeats) free.
                result = await loop.run_in_executor(None, billing.closer.close, commands,
                                                    billing.clock(), proven)
            except Exception:  # noqa: BLE001 - any failure means exit and restart
                exit_now()
            log.info("periods closed", extra={
                "invoices": len(result.finalized), "skipped": len(result.skipped),
                "correlation_ids": sorted({c.correlation_id for c in commands
                                           if c.correlation_id})})

    @app.timer(interval=settings.billing_tick_seconds,  # type: ignore[untyped-decorator]
               on_leader=True)
    async def schedule_closes() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, billing.sweep)
        except Exception:  # noqa: BLE001 - any failure means exit and restart
            exit_now()

    return app


def run_worker(settings: Settings) -> None:
    billing = Billing(settings, clock_from(settings.clock_file))
    billing.start()
    app = build_app(settings, billing)
    try:
        run_app(app, "billing")
    finally:
        billing.stop()

"""Closing periods: counters and plans in, finalized invoices and invoice events out.

``PeriodCloser.close`` is what the billing agent runs for each batch of close commands, with
``now`` from the worker's clock (``METERLY_CLOCK_FILE`` moves it in tests). No test calls it
directly: it runs inside real billing worker processes in the integration tests
(test_billing_e2e, test_invoice_numbers, test_billing_kills, test_close_barrier), and of the
pure code it composes only pricing and invoice composition have unit tests (``compose_draft``
and ``late_periods`` are exercised end to end only). It is idempotent: the invoice id is
derived from tenant and period, a stored draft is refreshed until it has a number, a
numbered invoice is never changed, and ``invoice.finalized`` is sent again for any invoice
whose PDF is not stored yet (the renderer is idempotent too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from confluent_kafka import Producer
from prometheus_client import Counter, Histogram

from processors.billing import invoice_codec
from processors.billing.core.close import (
    compose_draft,
    counted_through,
    late_periods,
    tenants_to_close,
)
from processors.billing.core.invoice import GAPS_SHOWN, InvoiceDocument, OpenGap, Party
from processors.billing.inputs import snapshot_of
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.failpoints import failpoint
from processors.tenants.core.directory import Directory
from processors.usage.mirror_table import SourceGaps, UsageTable
from schemas.billing_commands_v1 import CloseCommand

log = logging.getLogger(__name__)
FINALIZED = Counter("meterly_invoices_finalized_total", "invoices given a number at period close")
CLOSE_SECONDS = Histogram("meterly_period_close_batch_seconds",
                          "time to close one batch of tenants' periods",
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

HELD = Counter("meterly_billing_closes_held_for_gaps_total",
               "closes held because the tenant's producers had open sequence gaps "
               "(METERLY_CLOSE_WITH_GAPS=hold)")


def open_gaps(found: Sequence[SourceGaps]) -> tuple[OpenGap, ...]:
    return tuple(OpenGap(g.source, g.missing, g.gaps[:GAPS_SHOWN], len(g.gaps))
                 for g in found if g.gaps)


@dataclass(frozen=True)
class CloseResult:
    finalized: list[InvoiceDocument]
    skipped: dict[str, str]


class PeriodCloser:
    def __init__(self, directory: Directory, usage: UsageTable, store: InvoiceStore,
                 numbers: InvoiceNumbers, producer: Producer, invoices_topic: str,
                 seller: Party, payment_terms_days: int,
                 close_with_gaps: Literal["list", "hold"] = "list") -> None:
        self.directory = directory
        self.usage = usage
        self.store = store
        self.numbers = numbers
        self.producer = producer
        self.invoices_topic = invoices_topic
        self.seller = seller
        self.payment_terms_days = payment_terms_days
        self.close_with_gaps = close_with_gaps

    def close(self, commands: Sequence[CloseCommand], now: datetime,
              complete_through: datetime | None = None) -> CloseResult:
        """Close ``commands``' periods. ``complete_through``: the instant before which the
        close barrier proved every accepted event counted (the caller waited for it)."""
        with CLOSE_SECONDS.time():
            result = self._close(commands, now, complete_through)
        return result

    def _close(self, commands: Sequence[CloseCommand], now: datetime,
               complete_through: datetime | None) -> CloseResult:
        wanted = list(dict.fromkeys((c.tenant_id, c.period) for c in commands))
        skipped: dict[str, str] = {}
        tenants = list(dict.fromkeys(t for t, _ in wanted))
        # Independent sets of reads: run them side by side.
        with ThreadPoolExecutor(2) as pool:
            history_reads = pool.submit(self.store.for_tenants, tenants)
            gap_reads = pool.submit(self.usage.open_gaps_many, tenants)
            current = self.usage.read_many(wanted)
            histories = history_reads.result()
            gaps = {t: open_gaps(found) for t, found in gap_reads.result().items()}
        usage: dict[str, dict[str, dict[str, Decimal]]] = {}
        for (tenant_id, period), meters in zip(wanted, current, strict=True):
            usage.setdefault(tenant_id, {})[period] = meters

        # Usage of recently invoiced periods, for late usage since their invoices.
        late_keys: list[tuple[str, str]] = []
        for tenant_id, period in wanted:
            late_keys += [(tenant_id, p) for p in late_periods(histories[tenant_id], period)]
        late_keys = [k for k in dict.fromkeys(late_keys) if k[1] not in usage.get(k[0], {})]
        for (tenant_id, period), meters in zip(late_keys, self.usage.read_many(late_keys),
                                               strict=True):
            usage.setdefault(tenant_id, {})[period] = meters

        drafts: list[InvoiceDocument] = []
        finalized: list[InvoiceDocument] = []
        for tenant_id, period in wanted:
            existing = next((d for d in histories[tenant_id] if d.period == period), None)
            if existing is not None and existing.status != "draft":
                finalized.append(existing)
                continue
            outcome = compose_draft(snapshot_of(self.directory, tenant_id), self.seller,
                                    self.payment_terms_days, period, histories[tenant_id],
                                    usage.get(tenant_id, {}), now)
            if isinstance(outcome, str):
                skipped[f"{tenant_id}/{period}"] = outcome
            elif gaps.get(tenant_id) and self.close_with_gaps == "hold":
                HELD.inc()
                skipped[f"{tenant_id}/{period}"] = "held: producer sequence gaps open (" + (
                    ", ".join(f"{g.source}: {g.missing} missing" for g in gaps[tenant_id])) + ")"
            else:
                drafts.append(replace(outcome, complete_through=counted_through(
                    outcome.period_end, complete_through), open_gaps=gaps.get(tenant_id, ())))
        stored = self.store.save_drafts(drafts)
        failpoint("billing.after-store")  # step 5 done, 6 not reached
        given = self.numbers.assign([(d.tenant_id, d.id) for d in stored if not d.number], now)
        FINALIZED.inc(len(given))
        numbered_elsewhere = []
        for doc in stored:
            if doc.number:
                finalized.append(doc)
            elif (doc.tenant_id, doc.id) in given:
                finalized.append(replace(doc, number=given[(doc.tenant_id, doc.id)],
                                         status="finalized", finalized_at=now))
            else:
                numbered_elsewhere.append((doc.tenant_id, doc.id))
        # Numbered meanwhile by another closer (or a pending claim it completed): re-read.
        finalized += [d for d in self.store.get_many(numbered_elsewhere) if d and d.number]
        cids = {(c.tenant_id, c.period): c.correlation_id for c in commands if c.correlation_id}
        self._announce([d for d in finalized if d.pdf_sha256 is None], cids)
        failpoint("billing.after-announce")  # step 7 done, 8 (Faust's commit) not
        if skipped:
            log.info("periods not invoiced", extra={"skipped": skipped})
        return CloseResult(finalized, skipped)

    def _announce(self, docs: Sequence[InvoiceDocument],
                  cids: dict[tuple[str, str], str]) -> None:
        """``invoice.finalized`` per invoice, carrying its close request's correlation id."""
        for doc in docs:
            cid = cids.get((doc.tenant_id, doc.period))
            headers: list[tuple[str, str | bytes | None]] | None = (
                [("correlation-id", cid.encode())] if cid else None)
            self.producer.produce(self.invoices_topic, invoice_codec.encode_event(
                invoice_codec.FINALIZED, doc), key=doc.tenant_id.encode(), headers=headers)
            self.producer.poll(0)
        remaining = self.producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} invoice events not acknowledged by Kafka")


def scheduled_commands(directory: Directory, period: str) -> list[CloseCommand]:
    """One close per tenant that had a plan assignment starting before the period ended."""
    return [CloseCommand(tenant_id, period, "schedule")
            for tenant_id in tenants_to_close(directory.subscriptions(), period)]

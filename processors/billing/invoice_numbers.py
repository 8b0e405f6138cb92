"""Gapless invoice numbers, safe with several billing workers finalizing at once.

Many jurisdictions require invoice numbers without gaps or repeats. One sequence row per
issuer prefix and year; a claim is one lightweight transaction (Paxos) that moves ``next``
past a batch *and* records which invoices that batch numbers (``pending``). The numbers are
then written onto the invoices. A claimer that dies between the two steps leaves the batch
in ``pending``, and every claimer first completes the pending batch before claiming its
own, so numbers are never lost. An invoice is never claimed twice: a claim only succeeds
against the latest ``next``, and the claimer has completed the latest batch and skipped
invoices that already have numbers by then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from processors.billing.core.invoice import format_number
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.failpoints import failpoint
from storage.cassandra import prepare

log = logging.getLogger(__name__)
_SEP = "\x1f"


class InvoiceNumbers:
    def __init__(self, session: Session, store: InvoiceStore, prefix: str) -> None:
        self._session = session
        self._store = store
        self.prefix = prefix
        table = f"{store.keyspace}.invoice_sequences"
        # A serial read sees every accepted Paxos round, like the claim itself.
        self._read = prepare(
            session, f"SELECT next, pending, pending_first, pending_at FROM {table} "
            "WHERE issuer = ? AND year = ?", ConsistencyLevel.LOCAL_SERIAL)
        self._create = prepare(
            session, f"INSERT INTO {table} (issuer, year, next, pending, pending_first) "
            "VALUES (?, ?, 1, [], 1) IF NOT EXISTS", ConsistencyLevel.LOCAL_QUORUM, serial=True)
        self._claim = prepare(
            session, f"UPDATE {table} SET next = ?, pending = ?, pending_first = ?, "
            "pending_at = ? WHERE issuer = ? AND year = ? IF next = ?",
            ConsistencyLevel.LOCAL_QUORUM, serial=True)

    def _complete(self, year: int, pending: Sequence[str], first: int,
                  at: datetime) -> None:
        refs = [tuple(p.split(_SEP, 1)) for p in pending]
        self._store.write_numbers(
            (tenant, invoice, format_number(self.prefix, year, first + offset), at)
            for offset, (tenant, invoice) in enumerate(refs))

    def assign(self, refs: Sequence[tuple[str, str]], at: datetime | None = None
               ) -> dict[tuple[str, str], str]:
        """Give every invoice in ``refs`` (``(tenant_id, id)``, drafts already stored) a
        number if it has none. Returns the numbers this call gave, by invoice."""
        at = (at or datetime.now(UTC)).astimezone(UTC)
        year = at.year
        wanted = list(dict.fromkeys(refs))
        while True:
            row = self._session.execute(self._read, (self.prefix, year)).one()
            if row is None:
                self._session.execute(self._create, (self.prefix, year))
                continue
            pending = list(row.pending or ())
            if pending:
                pending_at = (row.pending_at or at.replace(tzinfo=None)).replace(tzinfo=UTC)
                self._complete(year, pending, row.pending_first, pending_at)
            claimed = set(pending)
            numbers = self._store.numbers_of(wanted)
            todo = [r for r, n in zip(wanted, numbers, strict=True)
                    if n is None and _SEP.join(r) not in claimed]
            if not todo:
                return {}
            batch = [_SEP.join(r) for r in todo]
            applied = self._session.execute(self._claim, (
                row.next + len(batch), batch, row.next, at, self.prefix, year, row.next,
            )).one().applied
            if applied:
                failpoint("billing.after-claim")  # claimed and pending, not yet written
                self._complete(year, batch, row.next, at)
                return {ref: format_number(self.prefix, year, row.next + offset)
                        for offset, ref in enumerate(todo)}
            log.debug("invoice number claim lost a race; retrying")

"""Cassandra side of invoices: drafts created once per tenant and period, then finalized.

A draft's content may be recomputed until it has a number (``UPDATE ... IF number = null``);
after that only the PDF columns and ``voided_at`` change. Status is derived, never stored:
a number means finalized, ``voided_at`` means void.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType, PreparedStatement, SimpleStatement

from processors.billing import invoice_codec
from processors.billing.core.invoice import InvoiceDocument, InvoiceStatus
from storage.cassandra import prepare as prepared

T = TypeVar("T")

_COLUMNS = "tenant_id, id, document, number, finalized_at, voided_at, pdf_key, pdf_sha256"
CONCURRENCY = 128
#: Partitions per multi-partition read or unlogged batch. Closing thousands of tenants is
#: bound by the driver's per-request cost, not by Cassandra: one request per 50 tenants
#: instead of one per tenant cuts the billing worker's CPU by more than half.
GROUP = 50


def groups(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i:i + GROUP] for i in range(0, len(items), GROUP)]


def _utc(moment: datetime | None) -> datetime | None:
    # The driver returns naive UTC datetimes.
    return None if moment is None else moment.replace(tzinfo=UTC)


def from_row(row: Any) -> InvoiceDocument:
    doc = invoice_codec.decode(row.document)
    status: InvoiceStatus = "void" if row.voided_at else "finalized" if row.number else "draft"
    return replace(doc, status=status, number=row.number, finalized_at=_utc(row.finalized_at),
                   voided_at=_utc(row.voided_at), pdf_key=row.pdf_key,
                   pdf_sha256=row.pdf_sha256)


class InvoiceStore:
    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self.keyspace = keyspace

        def prepare(cql: str, serial: bool = False) -> PreparedStatement:
            return prepared(session, cql, ConsistencyLevel.LOCAL_QUORUM, serial)

        table = f"{keyspace}.invoices"
        self._insert = prepare(
            f"INSERT INTO {table} (tenant_id, id, period, currency, total, document, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS", serial=True)
        self._redraft = prepare(
            f"UPDATE {table} SET document = ?, total = ?, updated_at = ? "
            "WHERE tenant_id = ? AND id = ? IF number = null", serial=True)
        self._get = prepare(f"SELECT {_COLUMNS} FROM {table} WHERE tenant_id = ? AND id = ?")
        self._by_tenant = prepare(f"SELECT {_COLUMNS} FROM {table} WHERE tenant_id = ?")
        self._by_tenants = prepare(f"SELECT {_COLUMNS} FROM {table} WHERE tenant_id IN ?")
        self._numbers_in = prepare(
            f"SELECT tenant_id, id, number FROM {table} WHERE tenant_id IN ?")
        self._number = prepare(
            f"UPDATE {table} SET number = ?, finalized_at = ? WHERE tenant_id = ? AND id = ?")
        self._pdf = prepare(
            f"UPDATE {table} SET pdf_key = ?, pdf_sha256 = ?, updated_at = ? "
            "WHERE tenant_id = ? AND id = ?")
        self._void = prepare(
            f"UPDATE {table} SET voided_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ? "
            "IF voided_at = null", serial=True)
        self._numbers_of = prepare(
            f"SELECT number FROM {table} WHERE tenant_id = ? AND id = ?")

    def _run(self, statement: PreparedStatement, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        results = execute_concurrent_with_args(self._session, statement, args,
                                               concurrency=CONCURRENCY,
                                               raise_on_first_error=True)
        return [outcome for _ok, outcome in results]

    def save_drafts(self, docs: Sequence[InvoiceDocument]) -> list[InvoiceDocument]:
        """Store each draft, or refresh an earlier draft of the same invoice; an invoice that
        already has a number is left as it is. Returns what is stored now, in order."""
        now = datetime.now(UTC)
        inserted = self._run(self._insert, [
            (d.tenant_id, d.id, d.period, d.currency, d.total.amount,
             invoice_codec.encode(d).decode(), now)
            for d in docs])
        stored: list[InvoiceDocument | None] = []
        redraft: list[int] = []
        for index, (doc, rows) in enumerate(zip(docs, inserted, strict=True)):
            row = rows.one()
            if row.applied:
                stored.append(doc)
            elif row.number is None:
                stored.append(None)
                redraft.append(index)
            else:
                stored.append(from_row(row))
        if redraft:
            self._run(self._redraft, [
                (invoice_codec.encode(docs[i]).decode(), docs[i].total.amount, now,
                 docs[i].tenant_id, docs[i].id) for i in redraft])
            # Whether or not a finalizer won the race, the row now says what is stored.
            for i, current in zip(redraft, self.get_many(
                    [(docs[i].tenant_id, docs[i].id) for i in redraft]), strict=True):
                stored[i] = current
        return [s for s in stored if s is not None]

    def get(self, tenant_id: str, invoice_id: str) -> InvoiceDocument | None:
        row = self._session.execute(self._get, (tenant_id, invoice_id)).one()
        return None if row is None else from_row(row)

    def get_many(self, refs: Sequence[tuple[str, str]]) -> list[InvoiceDocument | None]:
        rows = self._run(self._get, refs)
        return [None if (row := r.one()) is None else from_row(row) for r in rows]

    def for_tenant(self, tenant_id: str) -> list[InvoiceDocument]:
        docs = [from_row(r) for r in self._session.execute(self._by_tenant, (tenant_id,))]
        return sorted(docs, key=lambda d: d.period)

    def for_tenants(self, tenant_ids: Sequence[str]) -> dict[str, list[InvoiceDocument]]:
        found: dict[str, list[InvoiceDocument]] = {t: [] for t in tenant_ids}
        for rows in self._run(self._by_tenants, [(list(g),) for g in groups(tenant_ids)]):
            for row in rows:
                found[row.tenant_id].append(from_row(row))
        return {t: sorted(docs, key=lambda d: d.period) for t, docs in found.items()}

    def page(self, limit: int, paging_state: bytes | None) -> tuple[list[InvoiceDocument],
                                                                       bytes | None]:
        """All invoices, in token order, ``limit`` at a time (the operator's list)."""
        statement = SimpleStatement(f"SELECT {_COLUMNS} FROM {self.keyspace}.invoices",
                                    fetch_size=limit)
        result = self._session.execute(statement, paging_state=paging_state)
        return [from_row(r) for r in result.current_rows], result.paging_state

    def numbers_of(self, refs: Sequence[tuple[str, str]]) -> list[str | None]:
        tenants = list(dict.fromkeys(t for t, _ in refs))
        numbers: dict[tuple[str, str], str | None] = {}
        for rows in self._run(self._numbers_in, [(list(g),) for g in groups(tenants)]):
            for row in rows:
                numbers[(row.tenant_id, row.id)] = row.number
        return [numbers.get(ref) for ref in refs]

    def _batched(self, statement: PreparedStatement, args: Sequence[tuple[Any, ...]]) -> None:
        futures = []
        # Under Cassandra's 5 KiB batch warning threshold with these small updates.
        for group in [args[i:i + 20] for i in range(0, len(args), 20)]:
            # Unlogged: each update is idempotent on its own; atomicity is not needed.
            batch = BatchStatement(batch_type=BatchType.UNLOGGED,
                                   consistency_level=ConsistencyLevel.LOCAL_QUORUM)
            for values in group:
                batch.add(statement, values)
            futures.append(self._session.execute_async(batch))
        for future in futures:
            future.result()

    def write_numbers(self, numbered: Iterable[tuple[str, str, str, datetime]]) -> None:
        """``(tenant_id, id, number, finalized_at)``: idempotent, the same values every time."""
        self._batched(self._number, [(n, at, t, i) for t, i, n, at in numbered])

    def set_pdfs(self, stored: Sequence[tuple[str, str, str, str]]) -> None:
        """``(tenant_id, id, object key, sha256)`` of PDFs now in the object store."""
        now = datetime.now(UTC)
        self._batched(self._pdf, [(key, sha, now, t, i) for t, i, key, sha in stored])

    def void(self, tenant_id: str, invoice_id: str, at: datetime) -> None:
        self._session.execute(self._void, (at, at, tenant_id, invoice_id))

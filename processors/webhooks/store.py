"""Cassandra side of webhooks: sent messages (for replay), the attempt log, endpoint
health."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from schemas.webhooks_v1 import Message
from storage.cassandra import prepare


async def execute(session: Session, statement: PreparedStatement | BatchStatement,
                  args: Sequence[Any] | None = None) -> list[Any]:
    """Run a statement from asyncio without blocking the loop; the first page of rows."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()

    def settle(rows: list[Any] | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(list(rows or []))

    def ok(rows: list[Any]) -> None:
        loop.call_soon_threadsafe(settle, rows, None)

    def failed(exc: BaseException) -> None:
        loop.call_soon_threadsafe(settle, None, exc)

    session.execute_async(statement, args).add_callbacks(ok, failed)
    return await done


@dataclass(slots=True)
class Attempt:
    tenant_id: str
    endpoint_id: str
    message_id: str
    event_type: str
    attempt: int
    attempted_at: datetime
    #: "delivered", "failed" (will retry) or "dead_lettered" (was the last attempt)
    outcome: str
    status_code: int | None
    latency_ms: int | None
    error: str | None


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


class WebhookStore:
    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        self._save_message = session.prepare(
            f"INSERT INTO {keyspace}.webhook_messages (tenant_id, message_id, event_type, body, "
            "created_at) VALUES (?, ?, ?, ?, ?)")
        self._message = session.prepare(
            f"SELECT message_id, event_type, body, created_at FROM {keyspace}.webhook_messages "
            "WHERE tenant_id = ? AND message_id = ?")
        self._attempt = session.prepare(
            f"INSERT INTO {keyspace}.webhook_attempts (tenant_id, endpoint_id, attempted_at, "
            "message_id, attempt, event_type, outcome, status_code, latency_ms, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._attempts = session.prepare(
            f"SELECT * FROM {keyspace}.webhook_attempts WHERE tenant_id = ? AND endpoint_id = ? "
            "LIMIT ?")
        self._healthy = session.prepare(
            f"UPDATE {keyspace}.webhook_endpoint_health SET tenant_id = ?, failing_since = null, "
            "last_success_at = ? WHERE endpoint_id = ?")
        self._failing = session.prepare(
            f"UPDATE {keyspace}.webhook_endpoint_health SET tenant_id = ?, last_failure_at = ? "
            "WHERE endpoint_id = ?")
        self._failing_since = prepare(
            session, f"UPDATE {keyspace}.webhook_endpoint_health SET failing_since = ? "
            "WHERE endpoint_id = ? IF failing_since = null", serial=True)
        self._health = session.prepare(
            f"SELECT failing_since, last_success_at, last_failure_at "
            f"FROM {keyspace}.webhook_endpoint_health WHERE endpoint_id = ?")

    # ---- asyncio side (the dispatcher) ------------------------------------------------

    async def save_messages(self, messages: Sequence[Message]) -> None:
        """Store messages, one single-partition batch per tenant and 100 messages."""
        now = datetime.now(UTC)
        by_tenant: dict[str, list[Message]] = defaultdict(list)
        for m in messages:
            by_tenant[m.tenant_id].append(m)
        batches = []
        for group in by_tenant.values():
            for start in range(0, len(group), 100):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for m in group[start:start + 100]:
                    batch.add(self._save_message, (m.tenant_id, m.id, m.type,
                                                   m.body().decode(), now))
                batches.append(batch)
        await asyncio.gather(*(execute(self.session, b) for b in batches))

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Write attempts, one single-partition batch per endpoint (cheap for Cassandra)."""
        by_partition: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
        for a in attempts:
            by_partition[(a.tenant_id, a.endpoint_id)].append(a)
        batches = []
        for group in by_partition.values():
            for start in range(0, len(group), 100):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for a in group[start:start + 100]:
                    batch.add(self._attempt, (
                        a.tenant_id, a.endpoint_id, a.attempted_at, a.message_id, a.attempt,
                        a.event_type, a.outcome, a.status_code, a.latency_ms, a.error))
                batches.append(batch)
        await asyncio.gather(*(execute(self.session, b) for b in batches))

    async def mark_healthy(self, tenant_id: str, endpoint_id: str, at: datetime) -> None:
        await execute(self.session, self._healthy, (tenant_id, at, endpoint_id))

    async def mark_failing(self, tenant_id: str, endpoint_id: str, at: datetime) -> datetime:
        """Record a failure; return since when the endpoint has been failing."""
        await execute(self.session, self._failing, (tenant_id, at, endpoint_id))
        await execute(self.session, self._failing_since, (at, endpoint_id))
        rows = await execute(self.session, self._health, (endpoint_id,))
        since = _utc(rows[0].failing_since) if rows else None
        return since or at

    # ---- blocking side (the gateway, in a thread) ---------------------------------------

    def message(self, tenant_id: str, message_id: str) -> tuple[str, bytes] | None:
        row = self.session.execute(self._message, (tenant_id, message_id)).one()
        return None if row is None else (row.event_type, row.body.encode())

    def attempts(self, tenant_id: str, endpoint_id: str, limit: int) -> list[Attempt]:
        rows = self.session.execute(self._attempts, (tenant_id, endpoint_id, limit))
        return [Attempt(r.tenant_id, r.endpoint_id, r.message_id, r.event_type, r.attempt,
                        _utc(r.attempted_at) or datetime.now(UTC), r.outcome, r.status_code,
                        r.latency_ms, r.error) for r in rows]

    def health(self, endpoint_id: str) -> dict[str, datetime | None]:
        row = self.session.execute(self._health, (endpoint_id,)).one()
        if row is None:
            return {"failing_since": None, "last_success_at": None, "last_failure_at": None}
        return {"failing_since": _utc(row.failing_since),
                "last_success_at": _utc(row.last_success_at),
                "last_failure_at": _utc(row.last_failure_at)}

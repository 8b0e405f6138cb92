"""Cassandra side of usage threshold notices: each (tenant, period, meter, percent) is sent
once. A row claims the notice before it is sent (``IF NOT EXISTS``), and is marked sent
once Kafka took the message; a claim that was never marked sent is sent again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cassandra.cluster import Session

from storage.cassandra import prepare

NoticeKey = tuple[str, str, str, int]  # tenant, period, meter, percent


class ThresholdLedger:
    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        self._notice = prepare(
            session, f"INSERT INTO {keyspace}.usage_threshold_notices (tenant_id, period, "
            "meter, percent, notified_at, sent) VALUES (?, ?, ?, ?, ?, false) IF NOT EXISTS",
            serial=True)
        self._notice_sent = session.prepare(
            f"UPDATE {keyspace}.usage_threshold_notices SET sent = true "
            "WHERE tenant_id = ? AND period = ? AND meter = ? AND percent = ?")

    def notice_due(self, tenant_id: str, period: str, meter: str, percent: int) -> bool:
        """True unless this threshold notice was already sent."""
        row = self.session.execute(self._notice, (tenant_id, period, meter, percent,
                                                  datetime.now(UTC))).one()
        return bool(row.applied or not row.sent)

    def notice_sent(self, keys: Sequence[NoticeKey]) -> None:
        for key in keys:
            self.session.execute(self._notice_sent, key)

"""Console sessions in Cassandra (``console_sessions``, migration 0009): signing out ends a
session on every gateway, not only in the browser that held the cookie."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.cluster import Session

from processors.tenants.core.operators import Actor
from schemas.admin_v1 import OperatorRole
from storage.cassandra import prepare


@dataclass(frozen=True)
class ConsoleSession:
    id: str
    actor: Actor
    created_at: datetime
    revoked_at: datetime | None


class SessionStore:
    def __init__(self, session: Session, keyspace: str, lifetime_seconds: int) -> None:
        self.session = session
        self.lifetime = lifetime_seconds
        table = f"{keyspace}.console_sessions"
        self._insert = prepare(session, f"INSERT INTO {table} (id, actor_id, actor_name, role, "
                                        "created_at) VALUES (?, ?, ?, ?, ?) USING TTL ?")
        self._get = prepare(session, f"SELECT id, actor_id, actor_name, role, created_at, "
                                     f"revoked_at FROM {table} WHERE id = ?")
        # UPDATE ... USING TTL keeps the row no longer than the session would have lasted.
        self._revoke = prepare(session, f"UPDATE {table} USING TTL ? SET revoked_at = ? "
                                        "WHERE id = ? IF EXISTS")

    def create(self, actor: Actor) -> ConsoleSession:
        now = datetime.now(UTC)
        made = ConsoleSession(secrets.token_urlsafe(24), actor, now, None)
        self.session.execute(self._insert, (made.id, actor.id, actor.name, actor.role, now,
                                            self.lifetime))
        return made

    def get(self, session_id: str) -> ConsoleSession | None:
        row = self.session.execute(self._get, (session_id,)).one()
        if row is None:
            return None
        role: OperatorRole = row.role
        return ConsoleSession(row.id, Actor("operator", row.actor_id, row.actor_name, role),
                              row.created_at.replace(tzinfo=UTC),
                              None if row.revoked_at is None
                              else row.revoked_at.replace(tzinfo=UTC))

    def revoke(self, session_id: str) -> None:
        self.session.execute(self._revoke, (self.lifetime, datetime.now(UTC), session_id))

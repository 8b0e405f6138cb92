"""The audit log in Cassandra (``audit_log``, ``audit_months``; migration 0009).

Append-only: this module only inserts and reads. Entries are kept by UTC month, newest
first; ``page`` walks back through the months that have entries, with a cursor.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.util import datetime_from_uuid1, uuid_from_time

from processors.tenants.core.audit import Entry
from storage.cassandra import prepare

LOG = "audit"


@dataclass(frozen=True)
class Stored:
    id: str
    at: datetime
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    target: str
    tenant_id: str | None
    before: str | None
    after: str | None
    detail: str | None


def _cursor(month: str, at: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{month}|{at}".encode()).decode().rstrip("=")


def parse_cursor(text: str) -> tuple[str, uuid.UUID]:
    """(month, time uuid) of a cursor; ValueError for anything ``page`` did not make."""
    try:
        month, _, at = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode(
            ).partition("|")
        parsed = uuid.UUID(at)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not an audit cursor") from exc
    if len(month) != 7 or month[4] != "-" or not month.replace("-", "").isdigit() or \
            parsed.version != 1:
        raise ValueError("not an audit cursor")
    return month, parsed


class AuditStore:
    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        columns = ("month, at, actor_kind, actor_id, actor_name, action, target, tenant_id, "
                   "before, after, detail")
        self._insert = prepare(session, f"INSERT INTO {keyspace}.audit_log ({columns}) "
                                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._month = prepare(session, f"INSERT INTO {keyspace}.audit_months (log, month) "
                                       "VALUES (?, ?)")
        self._months = prepare(session, f"SELECT month FROM {keyspace}.audit_months "
                                        "WHERE log = ?")
        self._newest = prepare(session, f"SELECT {columns} FROM {keyspace}.audit_log "
                                        "WHERE month = ? LIMIT ?")
        self._older = prepare(session, f"SELECT {columns} FROM {keyspace}.audit_log "
                                       "WHERE month = ? AND at < ? LIMIT ?")

    def write(self, entry: Entry, at: datetime | None = None) -> str:
        moment = at or datetime.now(UTC)
        at_id = uuid_from_time(moment)
        month = moment.strftime("%Y-%m")
        self.session.execute(self._month, (LOG, month))
        self.session.execute(self._insert, (
            month, at_id, entry.actor.kind, entry.actor.id, entry.actor.name, entry.action,
            entry.target, entry.tenant_id, entry.before, entry.after, entry.detail))
        return str(at_id)

    def page(self, limit: int, cursor: str | None = None, tenant_id: str | None = None,
             action: str | None = None) -> tuple[list[Stored], str | None]:
        """Up to ``limit`` entries, newest first, from ``cursor`` on; and the next cursor."""
        months = [r.month for r in self.session.execute(self._months, (LOG,))]
        start: tuple[str, uuid.UUID] | None = parse_cursor(cursor) if cursor else None
        found: list[Stored] = []
        last: tuple[str, uuid.UUID] | None = None
        for month in months:
            if start is not None and month > start[0]:
                continue
            position = start[1] if start is not None and month == start[0] else None
            while len(found) < limit:
                rows = list(self.session.execute(
                    self._older if position else self._newest,
                    (month, position, 200) if position else (month, 200)))
                for row in rows:
                    position = row.at
                    last = (month, row.at)
                    if (tenant_id is None or row.tenant_id == tenant_id) and \
                            (action is None or row.action.startswith(action)):
                        found.append(_stored(row))
                        if len(found) == limit:
                            break
                if len(rows) < 200:
                    break
            if len(found) == limit:
                break
        more = len(found) == limit and last is not None
        return found, (_cursor(*last) if more and last else None)


def _stored(row: Any) -> Stored:
    return Stored(str(row.at), datetime_from_uuid1(row.at).replace(tzinfo=UTC),
                  row.actor_kind, row.actor_id, row.actor_name, row.action, row.target,
                  row.tenant_id, row.before, row.after, row.detail)

"""Cassandra side of the counter mirror: absolute values, versioned by changelog offset.

Counter columns would count a retried increment twice, so the mirror writes absolute values
``USING TIMESTAMP <changelog offset>``. A key's changelog records all live in one partition,
so their offsets grow with every change; Cassandra keeps the value with the highest write
timestamp, which makes a replayed, retried or reordered write harmless: it can never move a
counter backwards or count twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import PreparedStatement

from processors.usage.core.sequences import missing_in
from schemas.counter_changelog_v1 import (
    CounterKey,
    GroupKey,
    GroupValue,
    SequenceKey,
    SequenceState,
)
from storage.cassandra import prepare

#: Usage is written and read at LOCAL_QUORUM: in a cluster, a close reads what the mirror
#: wrote even when one replica missed the write.
QUORUM = ConsistencyLevel.LOCAL_QUORUM


@dataclass(frozen=True)
class SourceGaps:
    """A producer's sequence numbers as the mirror holds them (``core.sequences``)."""

    source: str
    low: int
    high: int
    gaps: tuple[tuple[int, int], ...]
    overflow: bool
    updated_at: datetime | None

    @property
    def missing(self) -> int:
        return missing_in(self.gaps)


def _gaps_of(rows: Any) -> list[SourceGaps]:
    found = []
    for r in rows:
        gaps = tuple((int(a), int(b)) for a, b in orjson.loads(r.gaps or "[]"))
        updated = r.updated_at.replace(tzinfo=UTC) if r.updated_at else None
        found.append(SourceGaps(r.source, r.low, r.high, gaps, bool(r.overflow), updated))
    return sorted(found, key=lambda g: g.source)


@dataclass(frozen=True)
class MeterUsage:
    meter: str
    count: int
    total: Decimal


@dataclass(frozen=True)
class GroupUsage:
    """One group of a defined meter, as the mirror holds it."""

    meter: str
    group: tuple[tuple[str, str], ...]
    aggregation: str
    count: int
    #: The aggregate a price applies to (``GroupState.value``).
    value: Decimal


class UsageTable:
    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self._write = prepare(
            session, f"INSERT INTO {keyspace}.usage_by_period "
            "(tenant_id, period, meter, event_count, quantity_sum, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?", QUORUM)
        self._read_in = prepare(
            session, f"SELECT tenant_id, meter, quantity_sum FROM {keyspace}.usage_by_period "
            "WHERE tenant_id IN ? AND period = ?", QUORUM)
        self._write_daily = prepare(
            session, f"INSERT INTO {keyspace}.usage_daily (tenant_id, period, meter, day, "
            "event_count, quantity_sum) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?", QUORUM)
        self._read_daily = prepare(
            session, f"SELECT meter, day, event_count, quantity_sum FROM {keyspace}.usage_daily "
            "WHERE tenant_id = ? AND period = ?", QUORUM)
        self._read = prepare(
            session, f"SELECT meter, event_count, quantity_sum FROM {keyspace}.usage_by_period "
            "WHERE tenant_id = ? AND period = ?", QUORUM)
        self._write_sequence = prepare(
            session, f"INSERT INTO {keyspace}.usage_sequences (tenant_id, source, low, high, "
            "gaps, missing, overflow, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "USING TIMESTAMP ?", QUORUM)
        self._read_sequences = prepare(
            session, f"SELECT source, low, high, gaps, overflow, updated_at "
            f"FROM {keyspace}.usage_sequences WHERE tenant_id = ?", QUORUM)
        self._write_group = prepare(
            session, f"INSERT INTO {keyspace}.usage_groups (tenant_id, period, meter, "
            "group_key, aggregation, event_count, quantity_sum, maximum, latest_time, "
            "latest_value, distinct_count, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?) USING TIMESTAMP ?", QUORUM)
        self._read_groups = prepare(
            session, f"SELECT meter, group_key, aggregation, event_count, quantity_sum, "
            f"maximum, latest_value, distinct_count FROM {keyspace}.usage_groups "
            "WHERE tenant_id = ? AND period = ?", QUORUM)
        self._read_open_in = prepare(
            session, f"SELECT tenant_id, source, low, high, gaps, overflow, updated_at, "
            f"missing FROM {keyspace}.usage_sequences WHERE tenant_id IN ?", QUORUM)

    def _run_all(self, statement: PreparedStatement, args: list[Any], what: str) -> list[Any]:
        """``statement`` once per argument tuple, 64 at a time; each result's rows, in
        order; raise if any failed."""
        rows = []
        for ok, outcome in execute_concurrent_with_args(
                self._session, statement, args, concurrency=64, raise_on_first_error=True):
            if not ok:
                raise RuntimeError(f"{what} failed: {outcome}")
            rows.append(outcome)
        return rows

    def write_sequences(self, values: dict[SequenceKey, tuple[SequenceState, int]]) -> None:
        """``{(tenant, source): (state, changelog offset)}``, versioned by the offset."""
        now = datetime.now(UTC)
        args = [(tenant, source, low, high, orjson.dumps([list(g) for g in gaps]).decode(),
                 missing_in(gaps), overflow, now, offset)
                for (tenant, source), ((low, high, gaps, overflow), offset) in values.items()]
        self._run_all(self._write_sequence, args, "sequence mirror write")

    def read_gaps(self, tenant: str) -> list[SourceGaps]:
        """Every source of ``tenant`` that sent sequence numbers, by source."""
        return _gaps_of(self._session.execute(self._read_sequences, (tenant,)))

    def open_gaps_many(self, tenants: list[str]) -> dict[str, list[SourceGaps]]:
        """The sources with missing numbers, for each of ``tenants`` that has any (one
        request per 50 tenants; sources with nothing missing are left out)."""
        args = [(tenants[i:i + 50],) for i in range(0, len(tenants), 50)]
        found: dict[str, list[SourceGaps]] = {}
        for rows in self._run_all(self._read_open_in, args, "sequence read"):
            for r in rows:
                if r.missing:
                    found.setdefault(r.tenant_id, []).extend(_gaps_of([r]))
        return found

    def write(self, values: dict[CounterKey, tuple[int, Decimal, int]]) -> None:
        """Write ``{(tenant, period, meter): (count, sum, version)}``; raise if any write fails."""
        now = datetime.now(UTC)
        args = [
            (tenant, period, meter, count, total, now, version)
            for (tenant, period, meter), (count, total, version) in values.items()
        ]
        self._run_all(self._write, args, "mirror write")

    def write_groups(self, values: dict[GroupKey, tuple[GroupValue, int]]) -> None:
        """``{(tenant, period, meter, group): (value, changelog offset)}``, versioned by the
        offset; raise if any write fails."""
        now = datetime.now(UTC)
        args = []
        for (tenant, period, meter, group), (value, version) in values.items():
            aggregation, count, total, maximum, latest, distinct = value
            args.append((tenant, period, meter,
                         orjson.dumps([list(p) for p in group]).decode(), aggregation, count,
                         total, maximum, None if latest is None else latest[0],
                         None if latest is None else latest[2], distinct, now, version))
        self._run_all(self._write_group, args, "group mirror write")

    def read_groups(self, tenant: str, period: str) -> list[GroupUsage]:
        """Every group of every defined meter of ``tenant`` in ``period``, by meter and
        group."""
        found = []
        for r in self._session.execute(self._read_groups, (tenant, period)):
            group = tuple((str(d), str(v)) for d, v in orjson.loads(r.group_key))
            value = {"count": Decimal(r.event_count or 0),
                     "sum": r.quantity_sum or Decimal(0),
                     "max": r.maximum or Decimal(0),
                     "latest": r.latest_value or Decimal(0),
                     "unique_count": Decimal(r.distinct_count or 0)}.get(
                         r.aggregation, Decimal(0))
            found.append(GroupUsage(r.meter, group, r.aggregation, r.event_count or 0,
                                    value))
        return sorted(found, key=lambda g: (g.meter, g.group))

    def write_daily(self, values: dict[tuple[str, str, str, date], tuple[int, Decimal, int]]
                    ) -> None:
        """``{(tenant, period, meter, day): (count, sum, version)}``: end-of-day values."""
        args = [(tenant, period, meter, day, count, total, version)
                for (tenant, period, meter, day), (count, total, version) in values.items()]
        self._run_all(self._write_daily, args, "daily mirror write")

    def read_daily(self, tenant: str, period: str) -> dict[str, list[tuple[date, int, Decimal]]]:
        """Per meter, the day-by-day usage (not the running total), oldest day first."""
        running: dict[str, list[tuple[date, int, Decimal]]] = {}
        for r in self._session.execute(self._read_daily, (tenant, period)):
            day = r.day.date() if hasattr(r.day, "date") else r.day
            running.setdefault(r.meter, []).append(
                (day, r.event_count or 0, r.quantity_sum or Decimal(0)))
        daily: dict[str, list[tuple[date, int, Decimal]]] = {}
        for meter, points in running.items():
            points.sort()
            previous_count, previous_sum = 0, Decimal(0)
            out = []
            for day, count, total in points:
                out.append((day, count - previous_count, total - previous_sum))
                previous_count, previous_sum = count, total
            daily[meter] = out
        return daily

    def read_many(self, keys: list[tuple[str, str]]) -> list[dict[str, Decimal]]:
        """Quantity per meter for each ``(tenant, period)``, in order.

        One request per period and 50 tenants: at thousands of tenants the driver's cost per
        request, not Cassandra, is what limits a period close.
        """
        by_period: dict[str, list[str]] = {}
        for tenant, period in keys:
            by_period.setdefault(period, []).append(tenant)
        args = [(tenants[i:i + 50], period) for period, tenants in by_period.items()
                for i in range(0, len(tenants), 50)]
        results = self._run_all(self._read_in, args, "usage read")
        found: dict[tuple[str, str], dict[str, Decimal]] = {}
        for (_tenants, period), rows in zip(args, results, strict=True):
            for r in rows:
                found.setdefault((r.tenant_id, period), {})[r.meter] = (
                    r.quantity_sum or Decimal(0))
        return [found.get(key, {}) for key in keys]

    def read(self, tenant: str, period: str) -> list[MeterUsage]:
        rows = self._session.execute(self._read, (tenant, period))
        usage = [
            MeterUsage(r.meter, r.event_count or 0, r.quantity_sum or Decimal(0)) for r in rows
        ]
        return sorted(usage, key=lambda u: u.meter)

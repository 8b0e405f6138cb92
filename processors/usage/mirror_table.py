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

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from schemas.counter_changelog_v1 import CounterKey


@dataclass(frozen=True)
class MeterUsage:
    meter: str
    count: int
    total: Decimal


class UsageTable:
    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self._write = session.prepare(
            f"INSERT INTO {keyspace}.usage_by_period "
            "(tenant_id, period, meter, event_count, quantity_sum, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._read_in = session.prepare(
            f"SELECT tenant_id, meter, quantity_sum FROM {keyspace}.usage_by_period "
            "WHERE tenant_id IN ? AND period = ?"
        )
        self._write_daily = session.prepare(
            f"INSERT INTO {keyspace}.usage_daily (tenant_id, period, meter, day, event_count, "
            "quantity_sum) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._read_daily = session.prepare(
            f"SELECT meter, day, event_count, quantity_sum FROM {keyspace}.usage_daily "
            "WHERE tenant_id = ? AND period = ?"
        )
        self._read = session.prepare(
            f"SELECT meter, event_count, quantity_sum FROM {keyspace}.usage_by_period "
            "WHERE tenant_id = ? AND period = ?"
        )

    def write(self, values: dict[CounterKey, tuple[int, Decimal, int]]) -> None:
        """Write ``{(tenant, period, meter): (count, sum, version)}``; raise if any write fails."""
        now = datetime.now(UTC)
        args = [
            (tenant, period, meter, count, total, now, version)
            for (tenant, period, meter), (count, total, version) in values.items()
        ]
        results = execute_concurrent_with_args(
            self._session, self._write, args, concurrency=64, raise_on_first_error=True
        )
        for ok, outcome in results:
            if not ok:
                raise RuntimeError(f"mirror write failed: {outcome}")

    def write_daily(self, values: dict[tuple[str, str, str, date], tuple[int, Decimal, int]]
                    ) -> None:
        """``{(tenant, period, meter, day): (count, sum, version)}``: end-of-day values."""
        args = [(tenant, period, meter, day, count, total, version)
                for (tenant, period, meter, day), (count, total, version) in values.items()]
        for ok, outcome in execute_concurrent_with_args(
                self._session, self._write_daily, args, concurrency=64,
                raise_on_first_error=True):
            if not ok:
                raise RuntimeError(f"daily mirror write failed: {outcome}")

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
        results = execute_concurrent_with_args(self._session, self._read_in, args,
                                               concurrency=64, raise_on_first_error=True)
        found: dict[tuple[str, str], dict[str, Decimal]] = {}
        for (_tenants, period), (_ok, rows) in zip(args, results, strict=True):
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

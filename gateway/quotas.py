"""Hard limits: a plan may cap a meter per period; usage past the cap is refused with 429.

``Quotas.check`` gives a verdict (``QuotaExceeded`` or None); ``quota_problem`` is the 429
the routes answer with.

The check reads the live counters (the Cassandra mirror of the counting worker's state),
cached for one second per tenant and period. The counters trail accepted usage by the
mirror's lag (p99 under a second, docs/benchmarks.md), so a burst may overshoot a limit by
what arrives within that lag; it never blocks usage below the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.recent import Recent
from processors.billing.core.admin_records import plan_of
from processors.tenants.core.directory import Directory
from processors.tenants.core.subscriptions import assignment_at
from processors.usage.core.periods import period_bounds, period_of
from processors.usage.mirror_table import UsageTable

CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class QuotaExceeded:
    """A meter at its plan's hard limit for the period."""

    meter: str
    limit: Decimal
    used: Decimal
    period: str
    plan: str
    plan_version: int
    resets_at: datetime


def quota_problem(exceeded: QuotaExceeded, now: datetime) -> ProblemError:
    e = exceeded
    return ProblemError(
        429, "quota-exceeded", "Quota exceeded",
        f"meter {e.meter} reached its limit of {e.limit} for period {e.period} "
        f"(plan {e.plan} v{e.plan_version}); it resets when the period ends",
        headers={"Retry-After": str(max(1, int((e.resets_at - now).total_seconds())))},
        meter=e.meter, limit=str(e.limit), period=e.period, used=str(e.used),
        resets_at=e.resets_at.isoformat())


class Quotas:
    def __init__(self, directory: Directory, usage: UsageTable) -> None:
        self._directory = directory
        self._usage = usage
        # Plan versions never change, so their limits are read once.
        self._limits: dict[tuple[str, int], dict[str, Decimal]] = {}
        self._counters: Recent[tuple[str, str], tuple[float, dict[str, Decimal]]] = Recent(
            100_000)

    def limits_of(self, plan: str, version: int) -> dict[str, Decimal]:
        key = (plan, version)
        if key not in self._limits:
            record = self._directory.plan(plan, version)
            prices = plan_of(record).prices if record else {}
            self._limits[key] = {m: p.limit for m, p in prices.items() if p.limit is not None}
        return self._limits[key]

    async def _counted(self, tenant_id: str, period: str) -> dict[str, Decimal]:
        cached = self._counters.get((tenant_id, period))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        rows = await run_in_threadpool(self._usage.read, tenant_id, period)
        counted = {r.meter: r.total for r in rows}
        self._counters.put((tenant_id, period), (time.monotonic() + CACHE_SECONDS, counted))
        return counted

    async def check(self, tenant_id: str, meters: Iterable[str],
                    now: datetime | None = None) -> QuotaExceeded | None:
        """The first of ``meters`` (by name) at its limit this period, or None."""
        now = now or datetime.now(UTC)
        assignment = assignment_at(self._directory.subscription(tenant_id), now)
        if assignment is None:
            return None
        limits = self.limits_of(assignment.plan, assignment.version)
        capped = sorted(set(meters) & set(limits))
        if not capped:
            return None
        period = period_of(now)
        counted = await self._counted(tenant_id, period)
        over = [m for m in capped if counted.get(m, Decimal(0)) >= limits[m]]
        if not over:
            return None
        _start, end = period_bounds(period)
        meter = over[0]
        return QuotaExceeded(meter, limits[meter], counted.get(meter, Decimal(0)), period,
                             assignment.plan, assignment.version, end)

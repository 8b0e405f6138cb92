"""Hard limits: a plan may cap a meter per period; usage past the cap is refused with 429.

The check reads the live counters (the Cassandra mirror of the counting worker's state),
cached for one second per tenant and period. The counters trail accepted usage by the
mirror's lag (p99 under a second, docs/benchmarks.md), so a burst may overshoot a limit by
what arrives within that lag; it never blocks usage below the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from starlette.concurrency import run_in_threadpool

from gateway.admin_view import AdminView
from gateway.problems import ProblemError
from gateway.recent import Recent
from processors.billing_inputs import assignment_at
from processors.periods import period_bounds, period_of
from storage.usage_mirror import UsageTable

CACHE_SECONDS = 1.0


class Quotas:
    def __init__(self, admin: AdminView, usage: UsageTable) -> None:
        self._admin = admin
        self._usage = usage
        # Plan versions never change, so their limits are read once.
        self._limits: dict[tuple[str, int], dict[str, Decimal]] = {}
        self._counters: Recent[tuple[str, str], tuple[float, dict[str, Decimal]]] = Recent(
            100_000)

    def limits_of(self, plan: str, version: int) -> dict[str, Decimal]:
        key = (plan, version)
        if key not in self._limits:
            record = self._admin.plans.get(key)
            prices = record.spec.get("prices", {}) if record else {}
            self._limits[key] = {m: Decimal(p["limit"]) for m, p in prices.items()
                                 if p.get("limit") is not None}
        return self._limits[key]

    async def _counted(self, tenant_id: str, period: str) -> dict[str, Decimal]:
        cached = self._counters.get((tenant_id, period))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        rows = await run_in_threadpool(self._usage.read, tenant_id, period)
        counted = {r.meter: r.total for r in rows}
        self._counters.put((tenant_id, period), (time.monotonic() + CACHE_SECONDS, counted))
        return counted

    async def check(self, tenant_id: str, meters: Iterable[str]) -> None:
        """Raise the 429 quota problem if any of ``meters`` is at its limit this period."""
        now = datetime.now(UTC)
        assignment = assignment_at(self._admin.subscriptions.get(tenant_id), now)
        if assignment is None:
            return
        limits = self.limits_of(assignment.plan, assignment.version)
        capped = sorted(set(meters) & set(limits))
        if not capped:
            return
        period = period_of(now)
        counted = await self._counted(tenant_id, period)
        over = [m for m in capped if counted.get(m, Decimal(0)) >= limits[m]]
        if not over:
            return
        _start, end = period_bounds(period)
        meter = over[0]
        raise ProblemError(
            429, "quota-exceeded", "Quota exceeded",
            f"meter {meter} reached its limit of {limits[meter]} for period {period} "
            f"(plan {assignment.plan} v{assignment.version}); it resets when the period ends",
            headers={"Retry-After": str(max(1, int((end - now).total_seconds())))},
            meter=meter, limit=str(limits[meter]), period=period,
            used=str(counted.get(meter, Decimal(0))), resets_at=end.isoformat())

"""Usage as the API reads it: a tenant's counters per meter for one period, from Cassandra."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime
from processors.usage.core.periods import period_bounds, period_of
from schemas.api_v1 import MeterUsagePublic, UsagePublic


async def read_usage(runtime: Runtime, tenant_id: str, period: str | None) -> UsagePublic:
    period = period or period_of(datetime.now(UTC))
    try:
        period_bounds(period)
    except ValueError as exc:
        raise ProblemError(422, "invalid-period", "Invalid period", str(exc)) from None
    rows = await run_in_threadpool(runtime.usage.read, tenant_id, period)
    return UsagePublic(
        tenant_id=tenant_id, period=period,
        meters=[MeterUsagePublic(meter=r.meter, count=r.count, sum=str(r.total)) for r in rows],
    )

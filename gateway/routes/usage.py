"""Usage read API: a tenant's counters per meter for one period (``gateway.services.usage``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.runtime import CurrentTenant, Operator, RuntimeDep
from gateway.services.usage import (
    list_ingest_dead_letters,
    read_gaps,
    read_usage,
    replay_ingest_dead_letters,
)
from schemas.api_v1 import (
    IngestDeadLetterPublic,
    IngestReplay,
    ReplayResult,
    UsageGapsPublic,
    UsagePublic,
)

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsagePublic)
async def usage(tenant: CurrentTenant, runtime: RuntimeDep,
                period: str | None = None) -> UsagePublic:
    """The calling tenant's usage for ``period`` (YYYY-MM, UTC; default: the current one)."""
    return await read_usage(runtime, tenant.id, period)


@router.get("/usage/gaps", response_model=UsageGapsPublic)
async def usage_gaps(tenant: CurrentTenant, runtime: RuntimeDep) -> UsageGapsPublic:
    """Producer gap detection: for each ``source`` whose events carry the CloudEvents
    ``sequence`` extension, the lowest and highest number seen and the ranges between them
    that never arrived. A range closes when its events arrive."""
    return await read_gaps(runtime, tenant.id)


@router.get("/admin/ingest/dead-letter", response_model=list[IngestDeadLetterPublic])
async def ingest_dead_letters(runtime: RuntimeDep, _: Operator,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                              tenant_id: str | None = None) -> list[IngestDeadLetterPublic]:
    """Records the ingest validator refused, newest first, with the reason."""
    return await list_ingest_dead_letters(runtime, limit, tenant_id)


@router.post("/admin/ingest/dead-letter/replay", status_code=202,
             response_model=ReplayResult)
async def replay_ingest(body: IngestReplay, runtime: RuntimeDep,
                        _: Operator) -> ReplayResult:
    """Write the matching dead letters back to the ingest topic, as they were sent, to be
    judged again (a record already counted is counted once)."""
    return await replay_ingest_dead_letters(runtime, body)

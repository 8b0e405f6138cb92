"""Usage read API: a tenant's counters per meter for one period (``gateway.services.usage``)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.runtime import CurrentTenant, RuntimeDep
from gateway.services.usage import read_usage
from schemas.api_v1 import UsagePublic

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsagePublic)
async def usage(tenant: CurrentTenant, runtime: RuntimeDep,
                period: str | None = None) -> UsagePublic:
    """The calling tenant's usage for ``period`` (YYYY-MM, UTC; default: the current one)."""
    return await read_usage(runtime, tenant.id, period)

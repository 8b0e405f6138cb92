"""Operator API: tenants and their API keys (``gateway.services.tenants`` does the work)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.runtime import Operator, RuntimeDep, tenant_or_404
from gateway.services import tenants
from gateway.services.usage import read_gaps, read_usage
from schemas.api_v1 import (
    KeyCreate,
    KeyCreated,
    KeyPublic,
    KeyRotate,
    TenantCreate,
    TenantPage,
    TenantPublic,
    TenantUpdate,
    UsageGapsPublic,
    UsagePublic,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/tenants", status_code=201, response_model=TenantPublic)
async def create_tenant(body: TenantCreate, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return await tenants.create_tenant(runtime, body)


@router.get("/tenants", response_model=TenantPage)
async def list_tenants(
    runtime: RuntimeDep, _: Operator,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> TenantPage:
    return tenants.list_tenants(runtime, limit, cursor)


@router.get("/tenants/{tenant_id}", response_model=TenantPublic)
async def get_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return tenants.tenant_public(tenant_or_404(runtime, tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantPublic)
async def update_tenant(tenant_id: str, body: TenantUpdate, runtime: RuntimeDep,
                        _: Operator) -> TenantPublic:
    return await tenants.update_tenant(runtime, tenant_id, body)


@router.post("/tenants/{tenant_id}/suspend", response_model=TenantPublic)
async def suspend_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return await tenants.set_status(runtime, tenant_id, "suspended")


@router.post("/tenants/{tenant_id}/reactivate", response_model=TenantPublic)
async def reactivate_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return await tenants.set_status(runtime, tenant_id, "active")


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated)
async def create_key(tenant_id: str, body: KeyCreate, runtime: RuntimeDep,
                     _: Operator) -> KeyCreated:
    return await tenants.create_key(runtime, tenant_id, body.name, body.scope)


@router.get("/tenants/{tenant_id}/keys", response_model=list[KeyPublic])
async def list_keys(tenant_id: str, runtime: RuntimeDep, _: Operator) -> list[KeyPublic]:
    return tenants.list_keys(runtime, tenant_id)


@router.post("/tenants/{tenant_id}/keys/{key_id}/revoke", response_model=KeyPublic)
async def revoke_key(tenant_id: str, key_id: str, runtime: RuntimeDep,
                     _: Operator) -> KeyPublic:
    return await tenants.revoke_key(runtime, tenant_id, key_id)


@router.post("/tenants/{tenant_id}/keys/{key_id}/rotate", status_code=201,
             response_model=KeyCreated)
async def rotate_key(tenant_id: str, key_id: str, body: KeyRotate, runtime: RuntimeDep,
                     _: Operator) -> KeyCreated:
    return await tenants.rotate_key(runtime, tenant_id, key_id, body.overlap_seconds)


@router.get("/tenants/{tenant_id}/usage/gaps", response_model=UsageGapsPublic)
async def tenant_usage_gaps(tenant_id: str, runtime: RuntimeDep,
                            _: Operator) -> UsageGapsPublic:
    return await read_gaps(runtime, tenant_or_404(runtime, tenant_id).id)


@router.get("/tenants/{tenant_id}/usage", response_model=UsagePublic)
async def tenant_usage(tenant_id: str, runtime: RuntimeDep, _: Operator,
                       period: str | None = None) -> UsagePublic:
    return await read_usage(runtime, tenant_or_404(runtime, tenant_id).id, period)

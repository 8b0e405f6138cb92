"""Operator API: tenants and their API keys. Every change is an event on the admin topic."""

from __future__ import annotations

import secrets
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from gateway import api_keys
from gateway.admin_view import now_text, time_text
from gateway.problems import ProblemError
from gateway.routes.plans import assign_plan, latest_plan
from gateway.routes.usage import read_usage
from gateway.runtime import Operator, RuntimeDep, tenant_or_404
from schemas.admin_v1 import ApiKey, Tenant
from schemas.api_v1 import (
    CURRENCIES,
    KeyCreate,
    KeyCreated,
    KeyPublic,
    KeyRotate,
    TenantCreate,
    TenantPage,
    TenantPublic,
    TenantUpdate,
    UsagePublic,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def tenant_public(t: Tenant) -> TenantPublic:
    # The public model has exactly the record's fields.
    return TenantPublic(**{**asdict(t), "billing_address": list(t.billing_address)})


def key_public(k: ApiKey, last_used: float | None) -> KeyPublic:
    used = time_text(datetime.fromtimestamp(last_used, UTC), "seconds") if last_used else None
    return KeyPublic(id=k.id, tenant_id=k.tenant_id, name=k.name, prefix=k.prefix,
                     created_at=k.created_at, last_used_at=used, revoked_at=k.revoked_at,
                     expires_at=k.expires_at)




def _key(runtime: RuntimeDep, tenant_id: str, key_id: str) -> ApiKey:
    key = runtime.admin.keys.get(key_id)
    if key is None or key.tenant_id != tenant_id:
        raise ProblemError(404, "key-not-found", "API key not found",
                           f"tenant {tenant_id} has no key {key_id}")
    return key


@router.post("/tenants", status_code=201, response_model=TenantPublic)
async def create_tenant(body: TenantCreate, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    if body.currency not in CURRENCIES:
        raise ProblemError(422, "unsupported-currency", "Unsupported currency",
                           f"{body.currency} is not one of {', '.join(CURRENCIES)}")
    now = now_text()
    plan = latest_plan(runtime, body.plan, body.currency) if body.plan else None
    tenant = Tenant(
        id=f"ten_{secrets.token_hex(8)}", name=body.name, billing_email=str(body.billing_email),
        currency=body.currency, status="active", created_at=now, updated_at=now,
        plan=body.plan, webhook_url=str(body.webhook_url) if body.webhook_url else None,
        rate_limit_per_second=body.rate_limit_per_second,
        tax_rate=None if body.tax_rate is None else str(body.tax_rate),
        payment_terms_days=body.payment_terms_days,
        billing_address=tuple(body.billing_address),
    )
    await runtime.admin.publish(tenant)
    if plan is not None:
        await assign_plan(runtime, tenant, plan, now)
    return tenant_public(tenant)


@router.get("/tenants", response_model=TenantPage)
async def list_tenants(
    runtime: RuntimeDep, _: Operator,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> TenantPage:
    ids = sorted(runtime.admin.tenants)
    if cursor:
        ids = [i for i in ids if i > cursor]
    page = ids[:limit]
    return TenantPage(
        data=[tenant_public(runtime.admin.tenants[i]) for i in page],
        next_cursor=page[-1] if len(ids) > limit else None,
    )


@router.get("/tenants/{tenant_id}", response_model=TenantPublic)
async def get_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return tenant_public(tenant_or_404(runtime, tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantPublic)
async def update_tenant(tenant_id: str, body: TenantUpdate, runtime: RuntimeDep,
                        _: Operator) -> TenantPublic:
    tenant = tenant_or_404(runtime, tenant_id)
    changes = body.model_dump(exclude_unset=True)
    if "billing_email" in changes:
        changes["billing_email"] = str(changes["billing_email"])
    if changes.get("webhook_url") is not None:
        changes["webhook_url"] = str(changes["webhook_url"])
    if changes.get("tax_rate") is not None:
        changes["tax_rate"] = str(changes["tax_rate"])
    if "billing_address" in changes:
        changes["billing_address"] = tuple(changes["billing_address"] or ())
    plan = None
    if changes.get("plan") and changes["plan"] != tenant.plan:
        plan = latest_plan(runtime, changes["plan"], tenant.currency)
    now = now_text()
    updated = replace(tenant, **changes, updated_at=now)
    await runtime.admin.publish(updated)
    if plan is not None:
        await assign_plan(runtime, updated, plan, now)
    return tenant_public(updated)


async def _set_status(runtime: RuntimeDep, tenant_id: str, status: str) -> TenantPublic:
    tenant = tenant_or_404(runtime, tenant_id)
    updated = replace(tenant, status=status, updated_at=now_text())  # type: ignore[arg-type]
    await runtime.admin.publish(updated)
    return tenant_public(updated)


@router.post("/tenants/{tenant_id}/suspend", response_model=TenantPublic)
async def suspend_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return await _set_status(runtime, tenant_id, "suspended")


@router.post("/tenants/{tenant_id}/reactivate", response_model=TenantPublic)
async def reactivate_tenant(tenant_id: str, runtime: RuntimeDep, _: Operator) -> TenantPublic:
    return await _set_status(runtime, tenant_id, "active")


async def _new_key(runtime: RuntimeDep, tenant: Tenant, name: str) -> KeyCreated:
    generated = api_keys.generate()
    key = ApiKey(id=f"key_{secrets.token_hex(8)}", tenant_id=tenant.id, name=name,
                 prefix=generated.display_prefix, hash=generated.hash, created_at=now_text())
    await runtime.admin.publish(key)
    return KeyCreated(**key_public(key, None).model_dump(), key=generated.raw)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated)
async def create_key(tenant_id: str, body: KeyCreate, runtime: RuntimeDep,
                     _: Operator) -> KeyCreated:
    return await _new_key(runtime, tenant_or_404(runtime, tenant_id), body.name)


@router.get("/tenants/{tenant_id}/keys", response_model=list[KeyPublic])
async def list_keys(tenant_id: str, runtime: RuntimeDep, _: Operator) -> list[KeyPublic]:
    tenant_or_404(runtime, tenant_id)
    keys = [k for k in runtime.admin.keys.values() if k.tenant_id == tenant_id]
    return [key_public(k, runtime.last_used.get(k.id))
            for k in sorted(keys, key=lambda k: k.created_at)]


@router.post("/tenants/{tenant_id}/keys/{key_id}/revoke", response_model=KeyPublic)
async def revoke_key(tenant_id: str, key_id: str, runtime: RuntimeDep,
                     _: Operator) -> KeyPublic:
    key = _key(runtime, tenant_id, key_id)
    if key.revoked_at is None:
        key = replace(key, revoked_at=now_text())
        await runtime.admin.publish(key)
    return key_public(key, runtime.last_used.get(key.id))


@router.post("/tenants/{tenant_id}/keys/{key_id}/rotate", status_code=201,
             response_model=KeyCreated)
async def rotate_key(tenant_id: str, key_id: str, body: KeyRotate, runtime: RuntimeDep,
                     _: Operator) -> KeyCreated:
    old = _key(runtime, tenant_id, key_id)
    if old.revoked_at is not None:
        raise ProblemError(409, "key-revoked", "API key revoked",
                           "a revoked key cannot be rotated; create a new key instead")
    created = await _new_key(runtime, tenant_or_404(runtime, tenant_id), old.name)
    until = datetime.now(UTC) + timedelta(seconds=body.overlap_seconds)
    await runtime.admin.publish(replace(old, expires_at=time_text(until)))
    return created


@router.get("/tenants/{tenant_id}/usage", response_model=UsagePublic)
async def tenant_usage(tenant_id: str, runtime: RuntimeDep, _: Operator,
                       period: str | None = None) -> UsagePublic:
    return await read_usage(runtime, tenant_or_404(runtime, tenant_id).id, period)

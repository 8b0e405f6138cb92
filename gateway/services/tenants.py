"""Tenants and their API keys. Every change is a record on the admin topic."""

from __future__ import annotations

import secrets
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

from gateway.problems import ProblemError
from gateway.runtime import Runtime, tenant_or_404
from gateway.services.plans import assign_plan, latest_plan
from processors.tenants.core import keys
from schemas.admin_v1 import ApiKey, Tenant, TenantStatus
from schemas.api_v1 import (
    KeyCreated,
    KeyPublic,
    TenantCreate,
    TenantPage,
    TenantPublic,
    TenantUpdate,
)
from schemas.currencies import CURRENCIES
from schemas.rfc3339 import now_text, parse_time, time_text


def tenant_public(t: Tenant) -> TenantPublic:
    # The public model has exactly the record's fields.
    return TenantPublic(**{**asdict(t), "billing_address": list(t.billing_address)})


def key_public(k: ApiKey, last_used: float | None) -> KeyPublic:
    used = time_text(datetime.fromtimestamp(last_used, UTC), "seconds") if last_used else None
    return KeyPublic(id=k.id, tenant_id=k.tenant_id, name=k.name, prefix=k.prefix,
                     created_at=k.created_at, last_used_at=used, revoked_at=k.revoked_at,
                     expires_at=k.expires_at,
                     scope="ingest" if k.scope == keys.INGEST_SCOPE else None)


def key_or_404(runtime: Runtime, tenant_id: str, key_id: str) -> ApiKey:
    key = runtime.directory.key(key_id)
    if key is None or key.tenant_id != tenant_id:
        raise ProblemError(404, "key-not-found", "API key not found",
                           f"tenant {tenant_id} has no key {key_id}")
    return key


async def create_tenant(runtime: Runtime, body: TenantCreate) -> TenantPublic:
    if body.currency not in CURRENCIES:
        raise ProblemError(422, "unsupported-currency", "Unsupported currency",
                           f"{body.currency} is not one of {', '.join(CURRENCIES)}")
    now = now_text()
    plan = latest_plan(runtime, body.plan, body.currency) if body.plan else None
    tenant = Tenant(
        id=f"ten_{secrets.token_hex(8)}", name=body.name, billing_email=str(body.billing_email),
        currency=body.currency, status="active", created_at=now, updated_at=now,
        plan=body.plan,
        rate_limit_per_second=body.rate_limit_per_second,
        tax_rate=None if body.tax_rate is None else str(body.tax_rate),
        payment_terms_days=body.payment_terms_days,
        billing_address=tuple(body.billing_address),
    )
    await runtime.admin_topic.publish(tenant)
    if plan is not None:
        await assign_plan(runtime, tenant, plan, now)
    return tenant_public(tenant)


def list_tenants(runtime: Runtime, limit: int, cursor: str | None) -> TenantPage:
    tenants = runtime.directory.tenants()  # by id
    if cursor:
        tenants = [t for t in tenants if t.id > cursor]
    page = tenants[:limit]
    return TenantPage(
        data=[tenant_public(t) for t in page],
        next_cursor=page[-1].id if len(tenants) > limit else None,
    )


async def update_tenant(runtime: Runtime, tenant_id: str, body: TenantUpdate) -> TenantPublic:
    tenant = tenant_or_404(runtime, tenant_id)
    changes = body.model_dump(exclude_unset=True)
    if "billing_email" in changes:
        changes["billing_email"] = str(changes["billing_email"])
    if changes.get("tax_rate") is not None:
        changes["tax_rate"] = str(changes["tax_rate"])
    if "billing_address" in changes:
        changes["billing_address"] = tuple(changes["billing_address"] or ())
    plan = None
    if changes.get("plan") and changes["plan"] != tenant.plan:
        plan = latest_plan(runtime, changes["plan"], tenant.currency)
    now = now_text()
    updated = replace(tenant, **changes, updated_at=now)
    await runtime.admin_topic.publish(updated)
    if plan is not None:
        await assign_plan(runtime, updated, plan, now)
    return tenant_public(updated)


async def set_status(runtime: Runtime, tenant_id: str, status: TenantStatus) -> TenantPublic:
    tenant = tenant_or_404(runtime, tenant_id)
    updated = replace(tenant, status=status, updated_at=now_text())
    await runtime.admin_topic.publish(updated)
    return tenant_public(updated)


async def _new_key(runtime: Runtime, tenant: Tenant, name: str,
                   scope: str | None = None) -> KeyCreated:
    generated = keys.generate()
    key = ApiKey(id=f"key_{secrets.token_hex(8)}", tenant_id=tenant.id, name=name,
                 prefix=generated.display_prefix, hash=generated.hash, created_at=now_text(),
                 scope=scope)
    await runtime.admin_topic.publish(key)
    return KeyCreated(**key_public(key, None).model_dump(), key=generated.raw)


async def create_key(runtime: Runtime, tenant_id: str, name: str,
                     scope: str | None = None) -> KeyCreated:
    return await _new_key(runtime, tenant_or_404(runtime, tenant_id), name, scope)


def list_keys(runtime: Runtime, tenant_id: str) -> list[KeyPublic]:
    tenant_or_404(runtime, tenant_id)
    found = runtime.directory.keys_of(tenant_id)
    return [key_public(k, runtime.last_used.get(k.id))
            for k in sorted(found, key=lambda k: k.created_at)]


async def revoke_key(runtime: Runtime, tenant_id: str, key_id: str) -> KeyPublic:
    key = key_or_404(runtime, tenant_id, key_id)
    if key.revoked_at is None:
        key = replace(key, revoked_at=now_text())
        await runtime.admin_topic.publish(key)
    return key_public(key, runtime.last_used.get(key.id))


async def rotate_key(runtime: Runtime, tenant_id: str, key_id: str,
                     overlap_seconds: int) -> KeyCreated:
    old = key_or_404(runtime, tenant_id, key_id)
    if old.revoked_at is not None:
        raise ProblemError(409, "key-revoked", "API key revoked",
                           "a revoked key cannot be rotated; create a new key instead")
    now = datetime.now(UTC)
    ends = None if old.expires_at is None else parse_time(old.expires_at)
    if ends is not None and ends <= now:
        raise ProblemError(409, "key-expired", "API key expired",
                           f"key {key_id} expired at {old.expires_at}; an expired key cannot be "
                           "rotated back to life: create a new key instead")
    created = await _new_key(runtime, tenant_or_404(runtime, tenant_id), old.name, old.scope)
    until = now + timedelta(seconds=overlap_seconds)
    if ends is not None:
        # A key already rotated keeps the end it has, or an earlier one: never a later one.
        until = min(until, ends)
    await runtime.admin_topic.publish(replace(old, expires_at=time_text(until)))
    return created

"""Plans (versioned), a tenant's plan assignments, and credits.

Every change is a record on the admin topic, like tenants and keys. A plan version never
changes once created: an edit is a new version, and invoices name the version they used.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime, tenant_or_404
from processors.billing.core.admin_records import credit_of
from processors.billing.core.invoice import credit_spent
from processors.billing.core.plans import to_plan
from processors.billing.core.pricing import PlanError
from processors.usage.core.periods import period_bounds, period_of
from schemas.admin_v1 import Assignment, CreditRecord, PlanVersion, Subscription, Tenant
from schemas.api_v1 import (
    AssignmentPublic,
    CreditCreate,
    CreditPublic,
    PlanAssign,
    SubscriptionPublic,
)
from schemas.plans_v1 import PlanPublic, PlanSpec
from schemas.rfc3339 import now_text, parse_time, time_text


def plan_public(record: PlanVersion) -> PlanPublic:
    return PlanPublic(**record.spec, version=record.version, created_at=record.created_at)


def plan_not_found(name: str, version: int | None = None) -> ProblemError:
    which = f"{name} v{version}" if version else name
    return ProblemError(404, "plan-not-found", "Plan not found", f"no plan {which}")


def latest_plan(runtime: Runtime, name: str, currency: str) -> PlanVersion:
    record = runtime.directory.latest_plan(name)
    if record is None:
        raise ProblemError(422, "unknown-plan", "Unknown plan",
                           f"no plan named {name}; create it with POST /v1/admin/plans")
    _same_currency(record, currency)
    return record


def _same_currency(record: PlanVersion, currency: str) -> None:
    if record.spec["currency"] != currency:
        raise ProblemError(422, "currency-mismatch", "Currency mismatch",
                           f"plan {record.name} bills in {record.spec['currency']}, "
                           f"the tenant in {currency}")


async def assign_plan(runtime: Runtime, tenant: Tenant, plan: PlanVersion,
                      effective_from: str) -> Subscription:
    current = runtime.directory.subscription(tenant.id)
    kept = current.assignments if current else ()
    # An assignment replaces any that would start at or after it.
    moment = parse_time(effective_from)
    kept = tuple(a for a in kept if parse_time(a.effective_from) < moment)
    subscription = Subscription(tenant.id, (*kept, Assignment(plan.name, plan.version,
                                                               effective_from)), now_text())
    await runtime.admin_topic.publish(subscription)
    if tenant.plan != plan.name:
        await runtime.admin_topic.publish(replace(tenant, plan=plan.name, updated_at=now_text()))
    return subscription


async def create_plan(runtime: Runtime, body: PlanSpec) -> PlanPublic:
    """Create a plan, or the next version of an existing one."""
    latest = runtime.directory.latest_plan(body.name)
    version = 1 if latest is None else latest.version + 1
    try:
        to_plan(body, version)
    except (PlanError, ValueError) as exc:
        raise ProblemError(422, "invalid-plan", "Invalid plan", str(exc)) from None
    record = PlanVersion(body.name, version, now_text(), body.model_dump(mode="json"))
    await runtime.admin_topic.publish(record)
    return plan_public(record)


def list_plans(runtime: Runtime) -> list[PlanPublic]:
    """The latest version of every plan."""
    names = runtime.directory.plan_names()
    return [plan_public(p) for n in names if (p := runtime.directory.latest_plan(n)) is not None]


def get_plan(runtime: Runtime, name: str, version: int | None = None) -> PlanPublic:
    record = (runtime.directory.latest_plan(name) if version is None
              else runtime.directory.plan(name, version))
    if record is None:
        raise plan_not_found(name, version)
    return plan_public(record)


def subscription_public(tenant_id: str, sub: Subscription | None) -> SubscriptionPublic:
    return SubscriptionPublic(tenant_id=tenant_id, assignments=[
        AssignmentPublic(plan=a.plan, version=a.version, effective_from=a.effective_from)
        for a in (sub.assignments if sub else ())])


async def put_plan(runtime: Runtime, tenant_id: str, body: PlanAssign) -> SubscriptionPublic:
    """Assign a plan from a moment on (default: now)."""
    tenant = tenant_or_404(runtime, tenant_id)
    if body.version is None:
        record = latest_plan(runtime, body.plan, tenant.currency)
    else:
        found = runtime.directory.plan(body.plan, body.version)
        if found is None:
            raise plan_not_found(body.plan, body.version)
        _same_currency(found, tenant.currency)
        record = found
    now = datetime.now(UTC)
    moment = (body.effective_from or now).astimezone(UTC)
    if moment < period_bounds(period_of(now))[0]:
        raise ProblemError(422, "backdated-plan-change", "Plan change backdated",
                           "a plan can take effect from the start of the current period on; "
                           "earlier periods may already be invoiced")
    sub = await assign_plan(runtime, tenant, record, time_text(moment))
    return subscription_public(tenant_id, sub)


def get_subscription(runtime: Runtime, tenant_id: str) -> SubscriptionPublic:
    tenant_or_404(runtime, tenant_id)
    return subscription_public(tenant_id, runtime.directory.subscription(tenant_id))


async def credits_public(runtime: Runtime, tenant_id: str) -> list[CreditPublic]:
    records = sorted(runtime.directory.credits_of(tenant_id),
                     key=lambda c: (c.created_at, c.id))
    history = await run_in_threadpool(runtime.invoices.for_tenant, tenant_id)
    spent = credit_spent(history)
    now = datetime.now(UTC)
    out = []
    for record in records:
        credit = credit_of(record)
        remaining = credit.amount.amount - spent.get(record.id, Decimal(0))
        out.append(CreditPublic(
            id=record.id, tenant_id=tenant_id, kind=record.credit_kind, amount=record.amount,
            currency=record.currency, description=record.description,
            created_at=record.created_at, expires_at=record.expires_at,
            remaining=str(remaining),
            expired=credit.expires_at is not None and credit.expires_at <= now))
    return out


async def create_credit(runtime: Runtime, tenant_id: str, body: CreditCreate) -> CreditPublic:
    """A prepaid credit grant (may expire) or a one-off credit note; both are spent by the
    next invoices, oldest first, after tax."""
    tenant = tenant_or_404(runtime, tenant_id)
    if body.currency != tenant.currency:
        raise ProblemError(422, "currency-mismatch", "Currency mismatch",
                           f"the tenant is billed in {tenant.currency}, not {body.currency}")
    now = datetime.now(UTC)
    if body.expires_at is not None and body.expires_at.astimezone(UTC) <= now:
        raise ProblemError(422, "invalid-credit", "Invalid credit", "expires_at is in the past")
    record = CreditRecord(
        id=f"cr_{secrets.token_hex(8)}", tenant_id=tenant.id, credit_kind=body.kind,
        amount=str(body.amount), currency=body.currency, description=body.description,
        created_at=time_text(now),
        expires_at=None if body.expires_at is None else time_text(body.expires_at),
    )
    await runtime.admin_topic.publish(record)
    return next(c for c in await credits_public(runtime, tenant_id) if c.id == record.id)


async def list_credits(runtime: Runtime, tenant_id: str) -> list[CreditPublic]:
    tenant_or_404(runtime, tenant_id)
    return await credits_public(runtime, tenant_id)

"""Operator API: plans (versioned), a tenant's plan assignments, and credits
(``gateway.services.plans`` does the work)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.runtime import Operator, RuntimeDep
from gateway.services import plans
from schemas.api_v1 import CreditCreate, CreditPublic, PlanAssign, SubscriptionPublic
from schemas.plans_v1 import PlanPublic, PlanSpec

router = APIRouter(prefix="/v1/admin", tags=["plans and credits"])


@router.post("/plans", status_code=201, response_model=PlanPublic)
async def create_plan(body: PlanSpec, runtime: RuntimeDep, _: Operator) -> PlanPublic:
    """Create a plan, or the next version of an existing one."""
    return await plans.create_plan(runtime, body)


@router.get("/plans", response_model=list[PlanPublic])
async def list_plans(runtime: RuntimeDep, _: Operator) -> list[PlanPublic]:
    """The latest version of every plan."""
    return plans.list_plans(runtime)


@router.get("/plans/{name}", response_model=PlanPublic)
async def get_plan(name: str, runtime: RuntimeDep, _: Operator) -> PlanPublic:
    return plans.get_plan(runtime, name)


@router.get("/plans/{name}/versions/{version}", response_model=PlanPublic)
async def get_plan_version(name: str, version: int, runtime: RuntimeDep,
                           _: Operator) -> PlanPublic:
    return plans.get_plan(runtime, name, version)


@router.put("/tenants/{tenant_id}/plan", response_model=SubscriptionPublic)
async def put_plan(tenant_id: str, body: PlanAssign, runtime: RuntimeDep,
                   _: Operator) -> SubscriptionPublic:
    """Assign a plan from a moment on (default: now)."""
    return await plans.put_plan(runtime, tenant_id, body)


@router.get("/tenants/{tenant_id}/plan", response_model=SubscriptionPublic)
async def get_subscription(tenant_id: str, runtime: RuntimeDep,
                           _: Operator) -> SubscriptionPublic:
    return plans.get_subscription(runtime, tenant_id)


@router.post("/tenants/{tenant_id}/credits", status_code=201, response_model=CreditPublic)
async def create_credit(tenant_id: str, body: CreditCreate, runtime: RuntimeDep,
                        _: Operator) -> CreditPublic:
    """A prepaid credit grant (may expire) or a one-off credit note; both are spent by the
    next invoices, oldest first, after tax."""
    return await plans.create_credit(runtime, tenant_id, body)


@router.get("/tenants/{tenant_id}/credits", response_model=list[CreditPublic])
async def list_credits(tenant_id: str, runtime: RuntimeDep,
                       _: Operator) -> list[CreditPublic]:
    return await plans.list_credits(runtime, tenant_id)

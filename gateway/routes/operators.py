"""Operator API: operators and their roles, and the audit log (``gateway.services.
operators``). Managing operators takes the admin role; reading the log, any role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.runtime import Operator, RuntimeDep
from gateway.services import operators
from schemas.api_v1 import AuditPage, OperatorCreate, OperatorCreated, OperatorPublic

router = APIRouter(prefix="/v1/admin", tags=["operators"])


@router.post("/operators", status_code=201, response_model=OperatorCreated)
async def create_operator(body: OperatorCreate, runtime: RuntimeDep,
                          _: Operator) -> OperatorCreated:
    """A named operator token with a role (shown once), or, with ``email``, an operator
    who signs in to the console with OpenID Connect."""
    return await operators.create_operator(runtime, body)


@router.get("/operators", response_model=list[OperatorPublic])
async def list_operators(runtime: RuntimeDep, _: Operator) -> list[OperatorPublic]:
    return operators.list_operators(runtime)


@router.post("/operators/{operator_id}/revoke", response_model=OperatorPublic)
async def revoke_operator(operator_id: str, runtime: RuntimeDep,
                          _: Operator) -> OperatorPublic:
    """Revoke an operator (``bootstrap`` is the METERLY_ADMIN_TOKEN); refused if it would
    leave no admin."""
    return await operators.revoke_operator(runtime, operator_id)


@router.get("/audit", response_model=AuditPage)
async def audit(runtime: RuntimeDep, _: Operator,
                limit: Annotated[int, Query(ge=1, le=500)] = 100,
                cursor: Annotated[str | None, Query(max_length=200)] = None,
                tenant_id: Annotated[str | None, Query(max_length=100)] = None,
                action: Annotated[str | None, Query(max_length=100,
                                                    description="a prefix: tenant, "
                                                    "api_key.revoked, ...")] = None,
                ) -> AuditPage:
    """Every change, newest first: who, when, what, before and after."""
    return await operators.audit_page(runtime, limit, cursor, tenant_id, action)

"""Operators: named operator tokens and OpenID Connect operators, with their roles; and the
audit log they (and everyone else who changes anything) leave."""

from __future__ import annotations

import secrets
from dataclasses import replace

import orjson
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime
from processors.tenants.audit_store import Stored, parse_cursor
from processors.tenants.core import operators
from schemas.admin_v1 import Operator
from schemas.api_v1 import (
    AuditEntryPublic,
    AuditPage,
    OperatorCreate,
    OperatorCreated,
    OperatorPublic,
)
from schemas.rfc3339 import now_text, time_text


def operator_public(found: Operator) -> OperatorPublic:
    return OperatorPublic(id=found.id, name=found.name, role=found.role, prefix=found.prefix,
                          email=found.email, created_at=found.created_at,
                          revoked_at=found.revoked_at)


def _bootstrap_revoked(runtime: Runtime) -> bool:
    return runtime.directory.operator(operators.BOOTSTRAP_ID) is not None


def list_operators(runtime: Runtime) -> list[OperatorPublic]:
    """Every operator, the bootstrap token first (shown revoked once it is)."""
    listed = sorted(runtime.directory.operators(), key=lambda o: o.created_at)
    if not _bootstrap_revoked(runtime):
        listed.insert(0, Operator(operators.BOOTSTRAP_ID, operators.BOOTSTRAP_NAME, "admin",
                                  "", ""))
    return [operator_public(o) for o in listed]


async def create_operator(runtime: Runtime, body: OperatorCreate) -> OperatorCreated:
    now = now_text()
    email = body.email.lower() if body.email else None
    if email is not None and any(o.email == email and o.revoked_at is None
                                 for o in runtime.directory.operators()):
        raise ProblemError(409, "operator-exists", "Operator exists",
                           f"an operator signs in as {email} already")
    token = None if email else operators.new_token()
    made = Operator(id=f"op_{secrets.token_hex(8)}", name=body.name, role=body.role,
                    created_at=now, updated_at=now,
                    prefix=token.prefix if token else None, hash=token.hash if token else None,
                    email=email)
    await runtime.admin_topic.publish(made)
    return OperatorCreated(**operator_public(made).model_dump(),
                           token=token.raw if token else None)


async def revoke_operator(runtime: Runtime, operator_id: str) -> OperatorPublic:
    found = runtime.directory.operator(operator_id)
    bootstrap = operator_id == operators.BOOTSTRAP_ID
    if found is None and not bootstrap:
        raise ProblemError(404, "operator-not-found", "Operator not found",
                           f"no operator {operator_id}")
    if found is not None and found.revoked_at is not None:
        return operator_public(found)
    why = operators.revocation_refused(operator_id, runtime.directory.operators(),
                                       _bootstrap_revoked(runtime))
    if why is not None:
        raise ProblemError(409, "last-admin", "The last admin", why)
    now = now_text()
    revoked = replace(found, revoked_at=now, updated_at=now) if found is not None else \
        Operator(operators.BOOTSTRAP_ID, operators.BOOTSTRAP_NAME, "admin", now, now,
                 revoked_at=now)
    await runtime.admin_topic.publish(revoked)
    return operator_public(revoked)


def _doc(text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    loaded = orjson.loads(text)
    return loaded if isinstance(loaded, dict) else {"value": loaded}


def entry_public(entry: Stored) -> AuditEntryPublic:
    return AuditEntryPublic(
        id=entry.id, at=time_text(entry.at),
        actor={"kind": entry.actor_kind, "id": entry.actor_id, "name": entry.actor_name},
        action=entry.action, target=entry.target, tenant_id=entry.tenant_id,
        before=_doc(entry.before), after=_doc(entry.after), detail=_doc(entry.detail))


async def audit_page(runtime: Runtime, limit: int, cursor: str | None,
                     tenant_id: str | None, action: str | None) -> AuditPage:
    if cursor is not None:
        try:
            parse_cursor(cursor)
        except ValueError:
            raise ProblemError(400, "invalid-cursor", "Invalid cursor",
                               "the cursor is not one this API gave out") from None
    found, following = await run_in_threadpool(runtime.audit.store.page, limit, cursor,
                                               tenant_id, action)
    return AuditPage(data=[entry_public(e) for e in found], next_cursor=following)

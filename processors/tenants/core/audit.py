"""What an audit entry says about a change (pure).

An entry names the actor, the action (``tenant.suspended``, ``api_key.rotated``, ...), the
target (``tenant:ten_1``), the tenant concerned, and the entity before and after the change
as JSON, with secrets left out: no key or token hash, no webhook signing secret.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from processors.tenants.core.operators import Actor
from schemas.admin_v1 import (
    AdminEntity,
    ApiKey,
    CreditRecord,
    MeterVersion,
    Operator,
    PlanVersion,
    Subscription,
    Tenant,
    WebhookEndpoint,
)


@dataclass(frozen=True)
class Entry:
    actor: Actor
    action: str
    target: str
    tenant_id: str | None
    before: str | None
    after: str | None
    detail: str | None = None


def redacted(entity: AdminEntity) -> dict[str, Any]:
    doc = asdict(entity)
    if isinstance(entity, ApiKey | Operator):
        doc.pop("hash", None)
    if isinstance(entity, WebhookEndpoint):
        doc["secrets"] = [{"expires_at": s.expires_at} for s in entity.secrets]
    return doc


def _json(entity: AdminEntity | None) -> str | None:
    return None if entity is None else orjson.dumps(redacted(entity)).decode()


def _verb(before: AdminEntity | None, after: AdminEntity) -> str:
    if isinstance(after, ApiKey | Operator) and after.revoked_at and \
            not getattr(before, "revoked_at", None):
        # The bootstrap operator's first record is its revocation.
        return "revoked"
    if before is None:
        return "created"
    if isinstance(after, Tenant) and isinstance(before, Tenant) and \
            before.status != after.status:
        return "suspended" if after.status == "suspended" else "reactivated"
    if isinstance(after, ApiKey) and isinstance(before, ApiKey) and \
            after.expires_at != before.expires_at:
        return "rotated"
    if isinstance(after, WebhookEndpoint) and isinstance(before, WebhookEndpoint):
        if after.deleted and not before.deleted:
            return "deleted"
        if after.secrets[:1] != before.secrets[:1]:
            return "secret_rotated"
    return "updated"


_KIND = {Tenant: "tenant", ApiKey: "api_key", PlanVersion: "plan",
         Subscription: "subscription", CreditRecord: "credit", WebhookEndpoint: "webhook",
         Operator: "operator", MeterVersion: "meter"}


def _tenant_of(entity: AdminEntity) -> str | None:
    if isinstance(entity, Tenant):
        return entity.id
    return getattr(entity, "tenant_id", None)


def admin_change(actor: Actor, before: AdminEntity | None, after: AdminEntity) -> Entry:
    """The entry for publishing ``after`` over ``before`` (None: a new entity)."""
    kind = _KIND[type(after)]
    return Entry(actor, f"{kind}.{_verb(before, after)}", after.record_key.decode(),
                 _tenant_of(after), _json(before), _json(after))

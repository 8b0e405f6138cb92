"""What a gateway process holds while it runs, and the request dependencies built on it."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from gateway import api_keys
from gateway.admin_view import AdminView
from gateway.kafka_io import AsyncProducer
from gateway.problems import ProblemError
from gateway.quotas import Quotas
from gateway.rate_limit import RateLimiter
from gateway.recent import Recent
from gateway.usage_sink import UsageSink
from ops.settings import Settings
from schemas.admin_v1 import Tenant
from storage.invoices import InvoiceStore
from storage.object_store import ObjectStore
from storage.usage_mirror import UsageTable
from storage.webhooks import WebhookStore


@dataclass
class IdempotentResponse:
    body_hash: str
    status: int
    body: bytes


@dataclass
class Runtime:
    settings: Settings
    admin_token: str
    producer: AsyncProducer
    admin: AdminView
    sink: UsageSink
    usage: UsageTable
    limiter: RateLimiter
    invoices: InvoiceStore
    objects: ObjectStore
    quotas: Quotas
    webhooks: WebhookStore
    #: Identities this process saw accepted, for ``duplicate`` receipts.
    recent_ids: Recent[bytes, bool] = field(default_factory=lambda: Recent(200_000))
    idempotency: Recent[tuple[str, str], IdempotentResponse | None] = field(
        default_factory=lambda: Recent(10_000))
    last_used: dict[str, float] = field(default_factory=dict)


def tenant_or_404(runtime: Runtime, tenant_id: str) -> Tenant:
    tenant = runtime.admin.tenants.get(tenant_id)
    if tenant is None:
        raise ProblemError(404, "tenant-not-found", "Tenant not found",
                           f"no tenant with id {tenant_id}")
    return tenant


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def require_operator(request: Request, runtime: RuntimeDep) -> None:
    token = _bearer(request)
    if token.startswith(api_keys.PREFIX):
        raise ProblemError(403, "forbidden", "Forbidden",
                           "a tenant API key is never accepted as the operator token")
    if not api_keys.same_token(token, runtime.admin_token):
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "the operator token is not valid",
                           headers={"WWW-Authenticate": "Bearer"})


async def require_tenant(request: Request, runtime: RuntimeDep) -> Tenant:
    token = _bearer(request)
    key = runtime.admin.key_by_hash(api_keys.key_hash(token)) if api_keys.looks_like_key(
        token) else None
    if key is None:
        raise ProblemError(401, "invalid-api-key", "Invalid API key",
                           "the API key is unknown", headers={"WWW-Authenticate": "Bearer"})
    why = runtime.admin.key_usable(key)
    if why is not None:
        raise ProblemError(401, "invalid-api-key", "Invalid API key", why,
                           headers={"WWW-Authenticate": "Bearer"})
    tenant = runtime.admin.tenants.get(key.tenant_id)
    if tenant is None:
        raise ProblemError(401, "invalid-api-key", "Invalid API key",
                           "the key's tenant does not exist")
    if tenant.status == "suspended":
        raise ProblemError(403, "tenant-suspended", "Tenant suspended",
                           f"tenant {tenant.id} is suspended; its keys are refused")
    limit = tenant.rate_limit_per_second or runtime.settings.rate_limit_per_second
    decision = runtime.limiter.take(key.id, limit)
    request.state.rate_headers = rate_headers = decision.headers()
    if not decision.allowed:
        raise ProblemError(429, "rate-limited", "Too many requests",
                           f"key {key.prefix}... is limited to {limit} requests per second",
                           headers=rate_headers | {"Retry-After": str(decision.retry_after)})
    runtime.last_used[key.id] = time.time()
    return tenant


Operator = Annotated[None, Depends(require_operator)]
CurrentTenant = Annotated[Tenant, Depends(require_tenant)]


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()

"""What a gateway process holds while it runs, and the request dependencies built on it."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from gateway.problems import ProblemError
from gateway.quotas import Quotas
from gateway.rate_limit import RateLimiter
from gateway.recent import Recent
from gateway.usage_sink import UsageSink
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.async_producer import AsyncProducer
from processors.runtime.settings import Settings
from processors.tenants.core import keys
from processors.tenants.core.directory import Directory
from processors.tenants.follower import AdminTopic
from processors.usage.mirror_table import UsageTable
from processors.usage.progress_table import ProgressTable
from processors.webhooks.store import WebhookStore
from schemas.admin_v1 import Tenant
from storage.object_store import ObjectStore


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
    #: Tenants, keys, plans, ...: read here; changed through ``admin_topic.publish``.
    directory: Directory
    admin_topic: AdminTopic
    sink: UsageSink
    usage: UsageTable
    #: The billing workers' close barriers: ``complete_through`` and ``billing status``.
    progress: ProgressTable
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
    tenant = runtime.directory.tenant(tenant_id)
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
    if token.startswith(keys.PREFIX):
        raise ProblemError(403, "forbidden", "Forbidden",
                           "a tenant API key is never accepted as the operator token")
    if not keys.same_token(token, runtime.admin_token):
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "the operator token is not valid",
                           headers={"WWW-Authenticate": "Bearer"})


async def require_tenant(request: Request, runtime: RuntimeDep) -> Tenant:
    token = _bearer(request)
    key = runtime.directory.key_by_hash(keys.key_hash(token)) if keys.looks_like_key(
        token) else None
    if key is None:
        raise ProblemError(401, "invalid-api-key", "Invalid API key",
                           "the API key is unknown", headers={"WWW-Authenticate": "Bearer"})
    state = keys.key_state(key, datetime.now(UTC))
    if state != "usable":
        raise ProblemError(401, "invalid-api-key", "Invalid API key", keys.REFUSALS[state],
                           headers={"WWW-Authenticate": "Bearer"})
    tenant = runtime.directory.tenant(key.tenant_id)
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


def correlation_id(request: Request) -> str:
    return request.headers.get("x-correlation-id") or uuid.uuid4().hex

"""What a gateway process holds while it runs, and the request dependencies built on it."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.types import Scope

from gateway.audit import ACTOR, AuditedTopic, AuditLog
from gateway.auth_throttle import FailureThrottle
from gateway.problems import ProblemError
from gateway.quotas import Quotas
from gateway.rate_limit import RateLimiter
from gateway.recent import Recent, TenantResponses
from gateway.usage_sink import UsageSink
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.async_producer import AsyncProducer
from processors.runtime.keyring import Keys
from processors.runtime.settings import Settings
from processors.tenants.console_sessions import SessionStore
from processors.tenants.core import keys, operators
from processors.tenants.core.directory import Directory
from processors.tenants.core.operators import Actor
from processors.usage.core.meters import MeterCache
from processors.usage.mirror_table import UsageTable
from processors.usage.progress_table import ProgressTable
from processors.webhooks.store import WebhookStore
from schemas.admin_v1 import ApiKey, Tenant
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
    #: The admin topic, each change recorded in the audit log as it is published.
    admin_topic: AuditedTopic
    sink: UsageSink
    usage: UsageTable
    #: The billing workers' close barriers: ``complete_through`` and ``billing status``.
    progress: ProgressTable
    limiter: RateLimiter
    invoices: InvoiceStore
    objects: ObjectStore
    quotas: Quotas
    webhooks: WebhookStore
    #: Answers for replay to a retry with the same ``Idempotency-Key``, by tenant and key;
    #: ``None`` while the first request runs.
    idempotency: TenantResponses[IdempotentResponse | None]
    #: Console session keys, and the keys sealing webhook signing secrets (newest first).
    session_keys: Keys
    secret_keys: Keys
    audit: AuditLog
    sessions: SessionStore
    #: Identities this process saw accepted, for ``duplicate`` receipts.
    recent_ids: Recent[bytes, bool] = field(default_factory=lambda: Recent(200_000))
    last_used: dict[str, float] = field(default_factory=dict)
    #: Meter definitions, read once per version (the directory holds their records).
    meter_cache: MeterCache = field(default_factory=MeterCache)
    #: Failed authentications by client address, and by API key prefix.
    address_failures: FailureThrottle = field(
        default_factory=lambda: FailureThrottle(burst=20, per_minute=20))
    prefix_failures: FailureThrottle = field(
        default_factory=lambda: FailureThrottle(burst=10, per_minute=10))


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


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as: the operator, or a tenant through one of its keys."""

    kind: Literal["operator", "tenant"]
    tenant: Tenant | None = None
    #: The key's RateLimit-* headers, added to the answer (``gateway.app.RateLimitHeaders``).
    rate_headers: dict[str, str] | None = None
    #: Who this is in the audit log; an operator's carries its role.
    actor: Actor | None = None
    #: The tenant's key it authenticated with.
    key: ApiKey | None = None


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _throttled(retry_after: int, what: str) -> ProblemError:
    return ProblemError(429, "too-many-failed-authentications",
                        "Too many failed authentications",
                        f"too many failed authentications from {what}; try again in "
                        f"{retry_after} s", headers={"Retry-After": str(retry_after)})


def authenticate(runtime: Runtime, authorization: str, client: str) -> Principal:
    """The principal of a request's ``Authorization`` header, or the ProblemError refusing
    it. Failed attempts are throttled per client address and per key prefix
    (``gateway.auth_throttle``); a tenant key's requests are rate limited."""
    now = time.monotonic()
    token = authorization.partition(" ")[2].strip()
    subjects = [(runtime.address_failures, client, "this address")]
    if token.startswith(keys.PREFIX):
        prefix = token[:keys.DISPLAY_PREFIX_LENGTH]
        subjects.append((runtime.prefix_failures, prefix, f"keys starting {prefix}..."))
    for throttle, subject, what in subjects:
        wait = throttle.retry_after(subject, now)
        if wait is not None:
            raise _throttled(wait, what)
    try:
        return _principal(runtime, authorization)
    except ProblemError as exc:
        if exc.status == 401:
            for throttle, subject, _what in subjects:
                throttle.failed(subject, now)
        raise


def _principal(runtime: Runtime, authorization: str) -> Principal:
    token = _bearer(authorization)
    if token.startswith(operators.TOKEN_PREFIX):
        return Principal("operator", actor=operator_actor(runtime, token))
    if not token.startswith(keys.PREFIX):
        if keys.same_token(token, runtime.admin_token):
            if runtime.directory.operator(operators.BOOTSTRAP_ID) is not None:
                raise ProblemError(401, "unauthenticated", "Authentication required",
                                   "the bootstrap operator token (METERLY_ADMIN_TOKEN) was "
                                   "revoked; use a named operator token",
                                   headers={"WWW-Authenticate": "Bearer"})
            return Principal("operator", actor=operators.BOOTSTRAP)
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "the token is neither an operator token nor an API key",
                           headers={"WWW-Authenticate": "Bearer"})
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
    if not decision.allowed:
        raise ProblemError(429, "rate-limited", "Too many requests",
                           f"key {key.prefix}... is limited to {limit} requests per second",
                           headers=decision.headers()
                           | {"Retry-After": str(decision.retry_after)})
    runtime.last_used[key.id] = time.time()
    return Principal("tenant", tenant, decision.headers(),
                     Actor("tenant-key", key.id, f"{key.name} ({key.prefix}...)"), key)


def operator_actor(runtime: Runtime, token: str) -> Actor:
    """The operator whose named token ``token`` is, or the 401 refusing it."""
    found = runtime.directory.operator_by_hash(keys.key_hash(token)) if \
        operators.looks_like_token(token) else None
    if found is None or found.revoked_at is not None:
        raise ProblemError(401, "unauthenticated", "Authentication required",
                           "the operator token is unknown" if found is None else
                           "the operator token was revoked",
                           headers={"WWW-Authenticate": "Bearer"})
    return Actor("operator", found.id, found.name, found.role)


def request_principal(request: Request, runtime: Runtime) -> Principal:
    """The principal ``gateway.guard.RequestGuard`` authenticated before the body was
    read; a request it did not cover is authenticated here."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        client = request.client.host if request.client else "?"
        principal = authenticate(runtime, request.headers.get("authorization", ""), client)
        remember(request.scope, principal)
    return principal


def remember(scope: Scope, principal: Principal) -> None:
    state = scope.setdefault("state", {})
    state["principal"] = principal
    ACTOR.set(principal.actor)
    if principal.rate_headers:
        state["rate_headers"] = principal.rate_headers


async def require_operator(request: Request, runtime: RuntimeDep) -> None:
    """An operator whose role may call this route (``processors.tenants.core.operators``)."""
    principal = request_principal(request, runtime)
    if principal.kind != "operator" or principal.actor is None or \
            principal.actor.role is None:
        raise ProblemError(403, "forbidden", "Forbidden",
                           "a tenant API key is never accepted as an operator token")
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if not operators.permitted(principal.actor.role, request.method, path):
        raise ProblemError(403, "role-forbidden", "Role may not do this",
                           operators.refusal(principal.actor.role, request.method, path))


async def require_tenant(request: Request, runtime: RuntimeDep) -> Tenant:
    principal = request_principal(request, runtime)
    if principal.tenant is None:
        raise ProblemError(401, "invalid-api-key", "Invalid API key",
                           "this route takes a tenant's API key, not the operator token",
                           headers={"WWW-Authenticate": "Bearer"})
    if principal.key is not None:
        route = request.scope.get("route")
        refusal = keys.scope_refusal(principal.key, request.method,
                                     getattr(route, "path", request.url.path))
        if refusal is not None:
            raise ProblemError(403, "key-scope", "Key may not do this", refusal)
    return principal.tenant


Operator = Annotated[None, Depends(require_operator)]
CurrentTenant = Annotated[Tenant, Depends(require_tenant)]


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def correlation_id(request: Request) -> str:
    return request.headers.get("x-correlation-id") or uuid.uuid4().hex

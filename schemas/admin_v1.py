"""``admin.v1`` records: tenants and API keys, one compacted record per entity.

Key ``tenant:<id>`` or ``key:<id>``; value JSON with ``"v": 1`` and ``"kind"``. Every gateway
process reads the whole topic into memory at start and follows its tail, which is how a new
or revoked key reaches every process within a second. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson

VERSION = 1
TenantStatus = Literal["active", "suspended"]


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    billing_email: str
    currency: str
    status: TenantStatus
    created_at: str
    updated_at: str
    plan: str | None = None
    webhook_url: str | None = None
    #: Token bucket refill per second for each of the tenant's keys; None = the default.
    rate_limit_per_second: int | None = None

    @property
    def record_key(self) -> bytes:
        return f"tenant:{self.id}".encode()


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    name: str
    prefix: str
    #: SHA-256 of the raw key, hex. The raw key is never stored.
    hash: str
    created_at: str
    revoked_at: str | None = None
    #: Set when the key was rotated: it keeps working until then.
    expires_at: str | None = None

    @property
    def record_key(self) -> bytes:
        return f"key:{self.id}".encode()


def encode(entity: Tenant | ApiKey) -> bytes:
    kind = "tenant" if isinstance(entity, Tenant) else "api_key"
    return orjson.dumps({"v": VERSION, "kind": kind, **asdict(entity)})


def decode(raw: bytes) -> Tenant | ApiKey:
    doc: dict[str, Any] = orjson.loads(raw)
    if doc.pop("v", None) != VERSION:
        raise ValueError("unsupported admin record version")
    kind = doc.pop("kind")
    if kind == "tenant":
        return Tenant(**doc)
    if kind == "api_key":
        return ApiKey(**doc)
    raise ValueError(f"unknown admin record kind {kind!r}")

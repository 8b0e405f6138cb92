"""``admin.v1`` records: tenants, API keys, plans, plan assignments, credits, webhooks.

One compacted record per entity. Key ``tenant:<id>``, ``key:<id>``, ``plan:<name>:<version>``
(plan versions are immutable), ``subscription:<tenant id>``, ``credit:<id>``,
``webhook:<id>`` or ``operator:<id>``; value JSON with ``"v": 1`` and ``"kind"``. Every
gateway process reads the whole topic into memory at start and follows its tail, which is
how a new or revoked key reaches every process within a second. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

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
    #: Token bucket refill per second for each of the tenant's keys; None = the default.
    rate_limit_per_second: int | None = None
    #: Tax rate in percent as a decimal string ("19"); None: no tax line.
    tax_rate: str | None = None
    #: Days from issue to due date; None: the deployment's default.
    payment_terms_days: int | None = None
    #: Postal address lines for the invoice's buyer block.
    billing_address: tuple[str, ...] = ()

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
    #: None: the tenant's whole API. ``ingest``: only sending usage (``POST /v1/events``,
    #: and the ``meterly-key`` header of records on the Kafka ingest topic).
    scope: str | None = None

    @property
    def record_key(self) -> bytes:
        return f"key:{self.id}".encode()


@dataclass(frozen=True)
class MeterVersion:
    """One immutable version of a meter definition; ``spec`` is the ``MeterSpec`` JSON
    (schemas.meters_v1). Events are read with the versions in force when accepted."""

    key: str
    version: int
    created_at: str
    spec: dict[str, Any]

    @property
    def record_key(self) -> bytes:
        return f"meter:{self.key}:{self.version}".encode()


@dataclass(frozen=True)
class PlanVersion:
    """One immutable version of a plan; ``spec`` is the ``PlanSpec`` JSON (schemas.plans_v1)."""

    name: str
    version: int
    created_at: str
    spec: dict[str, Any]

    @property
    def record_key(self) -> bytes:
        return f"plan:{self.name}:{self.version}".encode()


@dataclass(frozen=True)
class Assignment:
    plan: str
    version: int
    #: RFC 3339 UTC; the plan applies from this moment until the next assignment's.
    effective_from: str


@dataclass(frozen=True)
class Subscription:
    """A tenant's plan history: every assignment, oldest first."""

    tenant_id: str
    assignments: tuple[Assignment, ...]
    updated_at: str

    @property
    def record_key(self) -> bytes:
        return f"subscription:{self.tenant_id}".encode()


@dataclass(frozen=True)
class CreditRecord:
    """A prepaid credit grant or a one-off credit note. Amounts are exact decimal strings."""

    id: str
    tenant_id: str
    #: Not ``kind``: that key names the record type in the JSON.
    credit_kind: Literal["grant", "credit_note"]
    amount: str
    currency: str
    description: str
    created_at: str
    expires_at: str | None = None

    @property
    def record_key(self) -> bytes:
        return f"credit:{self.id}".encode()


@dataclass(frozen=True)
class SigningSecret:
    #: Sealed (``mse1.<key id>...``, processors.webhooks.core.sealing): kept because signing
    #: needs it back (unlike API keys, which are hashed). Records written before 2026-12-07
    #: hold the ``whsec_...`` secret itself.
    secret: str
    #: Set on the old secret when rotated: deliveries carry both signatures until then.
    expires_at: str | None = None


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    tenant_id: str
    url: str
    event_types: tuple[str, ...]
    secrets: tuple[SigningSecret, ...]
    created_at: str
    updated_at: str
    enabled: bool = True
    description: str = ""
    #: Why Meterly disabled it (failing for days); None when enabled or disabled by a person.
    disabled_reason: str | None = None
    deleted: bool = False

    @property
    def record_key(self) -> bytes:
        return f"webhook:{self.id}".encode()


OperatorRole = Literal["admin", "billing", "read-only"]


@dataclass(frozen=True)
class Operator:
    """A named operator identity: an operator API token (``mot_...``, only its SHA-256 kept)
    or, with ``email``, whoever signs in to the console with OpenID Connect as that address.
    ``id`` ``bootstrap`` is the token of METERLY_ADMIN_TOKEN; its record exists only once
    that token was revoked."""

    id: str
    name: str
    role: OperatorRole
    created_at: str
    updated_at: str
    prefix: str | None = None
    hash: str | None = None
    email: str | None = None
    revoked_at: str | None = None

    @property
    def record_key(self) -> bytes:
        return f"operator:{self.id}".encode()


AdminEntity = (Tenant | ApiKey | PlanVersion | Subscription | CreditRecord | WebhookEndpoint
               | Operator | MeterVersion)
_KINDS: dict[type, str] = {Tenant: "tenant", ApiKey: "api_key", PlanVersion: "plan",
                           Subscription: "subscription", CreditRecord: "credit",
                           WebhookEndpoint: "webhook_endpoint", Operator: "operator",
                           MeterVersion: "meter"}


def encode(entity: AdminEntity) -> bytes:
    return orjson.dumps({"v": VERSION, "kind": _KINDS[type(entity)], **asdict(entity)})


R = TypeVar("R")


def _known(cls: type[R], doc: dict[str, Any]) -> R:
    """``cls`` from the fields of ``doc`` it has: a field added by a newer writer is ignored
    (adding a field is not a new version; see ``schemas/topics.py``)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in doc.items() if k in names})


def decode(raw: bytes) -> AdminEntity:
    doc: dict[str, Any] = orjson.loads(raw)
    if doc.pop("v", None) != VERSION:
        raise ValueError("unsupported admin record version")
    kind = doc.pop("kind", None)
    if kind == "tenant":
        doc["billing_address"] = tuple(doc.get("billing_address", ()))
        return _known(Tenant, doc)
    if kind == "api_key":
        return _known(ApiKey, doc)
    if kind == "plan":
        return _known(PlanVersion, doc)
    if kind == "meter":
        return _known(MeterVersion, doc)
    if kind == "subscription":
        doc["assignments"] = tuple(_known(Assignment, a) for a in doc["assignments"])
        return _known(Subscription, doc)
    if kind == "credit":
        return _known(CreditRecord, doc)
    if kind == "operator":
        return _known(Operator, doc)
    if kind == "webhook_endpoint":
        doc["event_types"] = tuple(doc["event_types"])
        doc["secrets"] = tuple(_known(SigningSecret, x) for x in doc["secrets"])
        return _known(WebhookEndpoint, doc)
    raise ValueError(f"unknown admin record kind {kind!r}")

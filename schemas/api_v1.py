"""HTTP API v1 models: one per direction (create, update, public), as OpenAPI shows them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    WithJsonSchema,
    field_validator,
)

from schemas.plans_v1 import Amount


def _billing_email(value: str) -> str:
    """Syntax (RFC 5322 / 6531), normalised; no DNS is consulted. Meterly sends no mail to
    this address (it is printed on invoices and sent in webhooks), so the names RFC 2606
    reserves for testing and documentation (``acme.test``, ``example.com``) are accepted,
    for test and staging deployments. Names no mail can reach from outside one host or
    network (``localhost``, ``.local``, ``.invalid``, ``.onion``, ``.arpa``) are refused."""
    try:
        return validate_email(value, check_deliverability=False,
                              test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not an e-mail address: {exc}") from None


BillingEmail = Annotated[str, AfterValidator(_billing_email),
                         WithJsonSchema({"type": "string", "format": "email"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TenantCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    billing_email: BillingEmail
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    plan: str | None = Field(default=None, max_length=100,
                             description="assign the latest version of this plan from now")
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    tax_rate: Decimal | None = Field(default=None, ge=0, le=100, max_digits=7,
                                     decimal_places=4, description="percent")
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    billing_address: list[str] = Field(default_factory=list, max_length=6)


class TenantUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    billing_email: BillingEmail | None = None
    plan: str | None = Field(default=None, max_length=100)
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    tax_rate: Decimal | None = Field(default=None, ge=0, le=100, max_digits=7,
                                     decimal_places=4, description="percent")
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    billing_address: list[str] | None = Field(default=None, max_length=6)

    @field_validator("name", "billing_email", "plan", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Left out keeps the value; null would store a tenant without a name or e-mail.
        # (Runs only for fields the request sets: a default is not validated.)
        if value is None:
            raise ValueError("may not be null: leave the field out to keep its value")
        return value


class TenantPublic(BaseModel):
    id: str
    name: str
    billing_email: str
    currency: str
    status: Literal["active", "suspended"]
    plan: str | None
    rate_limit_per_second: int | None
    tax_rate: str | None = None
    payment_terms_days: int | None = None
    billing_address: list[str] = Field(default_factory=list)
    created_at: str
    updated_at: str


class TenantPage(BaseModel):
    data: list[TenantPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class KeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    scope: Literal["ingest"] | None = Field(
        default=None, description="unset: the tenant's whole API; `ingest`: only sending "
        "usage (POST /v1/events, and the `meterly-key` header of Kafka ingest records)")


class KeyRotate(_Strict):
    overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400,
                                 description="how long the old key keeps working")


class KeyPublic(BaseModel):
    id: str
    tenant_id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    expires_at: str | None
    scope: Literal["ingest"] | None = None


class KeyCreated(KeyPublic):
    key: str = Field(description="the raw key; shown once, store it now")


class Receipt(BaseModel):
    id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    receipts: list[Receipt]


class GapPublic(BaseModel):
    first: int
    last: int


class SourceGapsPublic(BaseModel):
    source: str
    lowest: int = Field(description="the lowest sequence number seen from this source")
    highest: int = Field(description="the highest sequence number seen")
    missing: int = Field(description="how many numbers between them never arrived")
    gaps: list[GapPublic] = Field(description="the missing ranges, inclusive, in order")
    overflow: bool = Field(description="more gaps opened than Meterly keeps (10,000 ranges); "
                           "later ones are not tracked")
    updated_at: str | None


class UsageGapsPublic(BaseModel):
    tenant_id: str
    sources: list[SourceGapsPublic]
    open_gaps: int = Field(description="missing ranges over every source")


class MeterUsagePublic(BaseModel):
    meter: str
    count: int
    sum: str = Field(description="exact decimal sum of data.quantity, as a string")


class GroupUsagePublic(BaseModel):
    meter: str = Field(description="a defined meter's key (docs/meters.md)")
    group: dict[str, str] = Field(description="the group's dimension values")
    aggregation: Literal["count", "sum", "max", "latest", "unique_count"]
    value: str = Field(description="the aggregate, an exact decimal as a string")
    events: int = Field(description="events that contributed to the group")


class UsagePublic(BaseModel):
    tenant_id: str
    period: str
    meters: list[MeterUsagePublic] = Field(
        description="event types no meter is defined for: a count and a sum of quantity")
    groups: list[GroupUsagePublic] = Field(
        default_factory=list, description="defined meters, one entry per group")
    complete_through: str | None = Field(
        default=None, description="every event accepted before this instant is in these "
        "counters (RFC 3339); null while no billing worker has proven it")


class ResourceResponse(BaseModel):
    resource: str
    event_id: str
    metered: bool = True


# ---- billing ------------------------------------------------------------------------------


class PlanAssign(_Strict):
    plan: str = Field(max_length=64)
    version: int | None = Field(default=None, ge=1, description="default: the latest version")
    effective_from: datetime | None = Field(
        default=None, description="RFC 3339; default: now. A change inside a period prorates "
        "flat fees by the second; usage is priced at the plan in force at the period's end")


class AssignmentPublic(BaseModel):
    plan: str
    version: int
    effective_from: str


class SubscriptionPublic(BaseModel):
    tenant_id: str
    assignments: list[AssignmentPublic]


class CreditCreate(_Strict):
    kind: Literal["grant", "credit_note"] = "grant"
    amount: Amount = Field(gt=0, description="in the tenant's currency; send as a string")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str = Field(min_length=1, max_length=200)
    expires_at: datetime | None = None


class CreditPublic(BaseModel):
    id: str
    tenant_id: str
    kind: Literal["grant", "credit_note"]
    amount: str
    currency: str
    description: str
    created_at: str
    expires_at: str | None
    remaining: str = Field(description="not yet spent by finalized invoices")
    expired: bool


class CloseRequest(_Strict):
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    tenant_ids: list[str] | None = Field(
        default=None, description="default: every tenant with a plan in the period")


class CloseAccepted(BaseModel):
    period: str
    invoices: dict[str, str] = Field(description="tenant id -> the invoice id it will have")


class BarrierWorkerPublic(BaseModel):
    worker: str
    complete_through: str | None
    stage: str = Field(description="the stage its current snapshot waits for "
                       "(ingest-validator, counter, mirror) or starting")
    waiting_since: str | None
    records_behind: int
    closes_waiting: int
    updated_at: str | None


class BillingStatus(BaseModel):
    complete_through: str | None = Field(
        description="every event accepted before this instant is counted and mirrored")
    closes_waiting: int = Field(description="close commands held by the close barrier")
    workers: list[BarrierWorkerPublic]


class MoneyPublic(BaseModel):
    amount: str
    currency: str


class PartyPublic(BaseModel):
    name: str
    address: list[str]
    email: str | None
    tax_id: str | None


class TierPublic(BaseModel):
    tier: int
    quantity: str
    unit_price: str
    flat_fee: str
    amount: str


class LinePublic(BaseModel):
    kind: Literal["usage", "flat_fee", "minimum", "adjustment"]
    description: str
    period: str
    amount: MoneyPublic
    meter: str | None
    quantity: str | None
    included: str
    tiers: list[TierPublic]


class CreditAppliedPublic(BaseModel):
    credit_id: str
    kind: str
    description: str
    amount: MoneyPublic
    remaining: MoneyPublic


class OpenGapPublic(BaseModel):
    source: str
    missing: int
    range_count: int
    ranges: list[list[int]] = Field(description="the first missing ranges, [first, last]")


class InvoicePublic(BaseModel):
    id: str
    number: str | None
    status: Literal["draft", "finalized", "void"]
    tenant_id: str
    period: str
    period_start: str
    period_end: str
    currency: str
    seller: PartyPublic
    buyer: PartyPublic
    plan: str
    plan_version: int
    lines: list[LinePublic]
    subtotal: MoneyPublic
    tax_rate: str | None
    tax: MoneyPublic
    total: MoneyPublic
    credits: list[CreditAppliedPublic]
    credits_applied: MoneyPublic
    amount_due: MoneyPublic
    credit_balance: MoneyPublic
    issued_at: str
    due_at: str
    finalized_at: str | None
    voided_at: str | None
    pdf_sha256: str | None
    complete_through: str | None = Field(
        default=None, description="every event accepted before this instant is counted on "
        "this invoice (RFC 3339; the period's end when the whole period is)")
    open_gaps: list[OpenGapPublic] = Field(
        default_factory=list, description="producers whose sequence numbers had gaps when "
        "the invoice was closed (its usage may be short by their missing events)")
    pdf_url: str | None = Field(default=None, description="expiring download link")


class InvoicePage(BaseModel):
    data: list[InvoicePublic]
    next_cursor: str | None


# ---- webhooks -----------------------------------------------------------------------------


class WebhookCreate(_Strict):
    url: HttpUrl
    event_types: list[str] | None = Field(default=None, description="default: every type")
    description: str = Field(default="", max_length=200)
    enabled: bool = True


class WebhookUpdate(_Strict):
    url: HttpUrl | None = None
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None


class WebhookPublic(BaseModel):
    id: str
    tenant_id: str
    url: str
    event_types: list[str]
    enabled: bool
    description: str
    disabled_reason: str | None
    secrets_in_use: int = Field(description="2 during a secret rotation")
    created_at: str
    updated_at: str
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the signing secret (whsec_...); shown once, store it now")


class SecretRotate(_Strict):
    overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400,
                                 description="how long the old secret keeps signing")


class DeliveryAttemptPublic(BaseModel):
    message_id: str
    event_type: str
    attempt: int
    attempted_at: str
    outcome: Literal["delivered", "failed", "dead_lettered"]
    status_code: int | None
    latency_ms: int | None
    error: str | None


class ReplayResult(BaseModel):
    replayed: int


class DeadLetterReplay(_Strict):
    tenant_id: str | None = None
    endpoint_id: str | None = None
    event_type: str | None = None


class IngestDeadLetterPublic(BaseModel):
    place: str = Field(description="topic/partition/offset of the dead letter")
    source: str = Field(description="topic/partition/offset the record was refused at")
    tenant_id: str
    reason: str
    event_id: str | None = Field(description="the CloudEvent id, when the record has one")
    replayed_from: str | None = Field(description="the dead letter this record replayed")


class InvalidRecordPublic(BaseModel):
    source: str = Field(description="topic/partition/offset of the record no reader could "
                                    "decode")
    readers: list[str] = Field(description="the readers that refused it (every process "
                                           "following a topic refuses it once)")
    reason: str
    key: str | None = Field(description="the record key (UTF-8, invalid bytes replaced)")
    size: int = Field(description="the value's length in bytes")
    value_base64: str = Field(description="the value's first 4 KiB, base64")
    dead_lettered_at: str = Field(description="when it reached invalid-records.v1 "
                                              "(RFC 3339)")


class IngestCredentialsCreate(_Strict):
    tenant_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=48, pattern=r"^[a-z0-9][a-z0-9-]*$",
                      description="names the producer: its Kafka principal is "
                                  "`ingest-<name>`, and its ingest key the same")


class IngestCredentialsPublic(BaseModel):
    name: str
    tenant_id: str
    principal: str | None = Field(description="the Kafka principal (SCRAM user) that may "
                                              "only write the ingest topic; null where "
                                              "Meterly does not manage the cluster's users")
    key: KeyPublic = Field(description="the ingest key the records carry")
    topic: str
    header: str = Field(description="the record header that carries the ingest key")


class IngestCredentialsCreated(IngestCredentialsPublic):
    key: KeyCreated
    kafka: dict[str, str] = Field(
        description="librdkafka settings for the producer (confluent-kafka, kcat): the "
                    "bootstrap servers and, where Meterly made a principal, its SASL "
                    "credentials; shown once")
    note: str | None = None


class IngestReplay(_Strict):
    tenant_id: str | None = None
    reason_contains: str | None = Field(default=None, max_length=200)


class DeadLetterPublic(BaseModel):
    message_id: str
    event_type: str
    tenant_id: str
    endpoint_id: str
    attempts: int
    last_error: str | None


OperatorRoleName = Literal["admin", "billing", "read-only"]


class OperatorCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    role: OperatorRoleName
    email: str | None = Field(
        default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
        description="an operator who signs in to the console with OpenID Connect as this "
                    "address; without it, a named operator token is made")


class OperatorPublic(BaseModel):
    id: str
    name: str
    role: OperatorRoleName
    prefix: str | None = Field(description="the token's first characters (token operators)")
    email: str | None
    created_at: str
    revoked_at: str | None


class OperatorCreated(OperatorPublic):
    token: str | None = Field(description="the raw operator token; shown once, store it now")


class AuditEntryPublic(BaseModel):
    id: str
    at: str
    actor: dict[str, str] = Field(description="kind (operator, tenant-key, system), id and name")
    action: str
    target: str
    tenant_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    data: list[AuditEntryPublic]
    next_cursor: str | None

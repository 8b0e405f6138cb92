"""HTTP API v1 models: one per direction (create, update, public), as OpenAPI shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

# ISO 4217 codes Meterly knows the minor units of; billing rounds to these.
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "INR",
              "BRL", "CNY", "KWD", "BHD")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TenantCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    billing_email: EmailStr
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    plan: str | None = Field(default=None, max_length=100)
    webhook_url: HttpUrl | None = None
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)


class TenantUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    billing_email: EmailStr | None = None
    plan: str | None = Field(default=None, max_length=100)
    webhook_url: HttpUrl | None = None
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)


class TenantPublic(BaseModel):
    id: str
    name: str
    billing_email: str
    currency: str
    status: Literal["active", "suspended"]
    plan: str | None
    webhook_url: str | None
    rate_limit_per_second: int | None
    created_at: str
    updated_at: str


class TenantPage(BaseModel):
    data: list[TenantPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class KeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)


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


class MeterUsagePublic(BaseModel):
    meter: str
    count: int
    sum: str = Field(description="exact decimal sum of data.quantity, as a string")


class UsagePublic(BaseModel):
    tenant_id: str
    period: str
    meters: list[MeterUsagePublic]


class ResourceResponse(BaseModel):
    resource: str
    event_id: str
    metered: bool = True

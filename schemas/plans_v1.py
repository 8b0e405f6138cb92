"""Plans as the API takes them and the admin topic keeps them (``PlanSpec``); the pricing
engine reads them through ``processors.billing.core.plans.to_plan``.

Amounts and quantities are decimals; send them as JSON strings ("0.008") to keep every digit
(numbers work too, but pass through a float on some clients). The same JSON is kept on the
admin topic, so a plan version reads back exactly as it was created.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ZERO = Decimal(0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TierSpec(_Strict):
    up_to: Decimal | None = Field(description="inclusive upper bound; null for the last tier")
    unit_price: Decimal
    flat_fee: Decimal = ZERO


class PriceSpec(_Strict):
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_price: Decimal | None = Field(default=None, description="per_unit")
    tiers: list[TierSpec] | None = Field(default=None, description="graduated, volume")
    package_size: Decimal | None = Field(default=None, description="package")
    package_price: Decimal | None = Field(default=None, description="package")
    included: Decimal = Field(default=ZERO, description="free units per period")
    limit: Decimal | None = Field(
        default=None, description="hard limit per period: usage past it is refused (429)")


class PlanSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str = Field(default="", max_length=500)
    flat_fee: Decimal = Field(default=ZERO, description="charged every period")
    minimum_spend: Decimal = Field(default=ZERO, description="per period")
    prices: dict[str, PriceSpec] = Field(description="meter name -> price")


class PlanPublic(PlanSpec):
    version: int
    created_at: str

"""Plans as the API takes them and the admin topic keeps them (``PlanSpec``); the pricing
engine reads them through ``processors.billing.core.plans.to_plan``.

Amounts and quantities are decimals; send them as JSON strings ("0.008") to keep every digit
(numbers work too, but pass through a float on some clients). The same JSON is kept on the
admin topic, so a plan version reads back exactly as it was created.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ZERO = Decimal(0)

# Bounds the billing arithmetic is exact for (docs/billing.md, "Bounds"); beyond them the
# API answers 422. Quantities match what an event may carry (below 10^15, 9 decimals).
Quantity = Annotated[Decimal, Field(max_digits=24, decimal_places=9)]
#: A price per unit: below 10^12, up to 12 decimals (0.000000000002 per token).
UnitPrice = Annotated[Decimal, Field(max_digits=24, decimal_places=12)]
#: A fee, a minimum, a package price or a credit: below 10^15, up to 9 decimals.
Amount = Annotated[Decimal, Field(max_digits=24, decimal_places=9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TierSpec(_Strict):
    up_to: Quantity | None = Field(description="inclusive upper bound; null for the last tier")
    unit_price: UnitPrice
    flat_fee: Amount = ZERO


class PriceSpec(_Strict):
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_price: UnitPrice | None = Field(default=None, description="per_unit")
    tiers: list[TierSpec] | None = Field(default=None, description="graduated, volume")
    package_size: Quantity | None = Field(default=None, description="package")
    package_price: Amount | None = Field(default=None, description="package")
    included: Quantity = Field(default=ZERO, description="free units per period")
    limit: Quantity | None = Field(
        default=None, description="hard limit per period: usage past it is refused (429)")


class PlanSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str = Field(default="", max_length=500)
    flat_fee: Amount = Field(default=ZERO, description="charged every period")
    minimum_spend: Amount = Field(default=ZERO, description="per period")
    prices: dict[str, PriceSpec] = Field(description="meter name -> price")


class PlanPublic(PlanSpec):
    version: int
    created_at: str

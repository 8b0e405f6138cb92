"""Plans as the API takes them, and their translation to the pricing engine's types.

Amounts and quantities are decimals; send them as JSON strings ("0.008") to keep every digit
(numbers work too, but pass through a float on some clients). The same JSON is kept on the
admin topic, so a plan version reads back exactly as it was created.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from processors.money import Money
from processors.pricing import (
    Graduated,
    MeterPrice,
    Package,
    PerUnit,
    Plan,
    PlanError,
    PriceModel,
    Tier,
    Volume,
)
from schemas.cloudevents import METER_PATTERN

ZERO = Decimal(0)
T = TypeVar("T")


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


def _need(meter: str, spec: PriceSpec, value: T | None, name: str) -> T:
    if value is None:
        raise PlanError(f"{meter}: a {spec.model} price needs {name}")
    return value


def _model(meter: str, spec: PriceSpec) -> PriceModel:
    if spec.model == "per_unit":
        return PerUnit(_need(meter, spec, spec.unit_price, "unit_price"))
    if spec.model == "package":
        return Package(_need(meter, spec, spec.package_size, "package_size"),
                       _need(meter, spec, spec.package_price, "package_price"))
    tiers = tuple(Tier(t.up_to, t.unit_price, t.flat_fee)
                  for t in _need(meter, spec, spec.tiers, "tiers"))
    return Graduated(tiers) if spec.model == "graduated" else Volume(tiers)


def to_plan(spec: PlanSpec, version: int) -> Plan:
    """The pricing engine's plan; raises ``PlanError`` naming what to fix."""
    try:
        Money(ZERO, spec.currency)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    prices = {}
    for meter, price in spec.prices.items():
        if not METER_PATTERN.match(meter):
            raise PlanError(f"{meter!r} is not a meter name (letters, digits, '.', '_', ':', '-')")
        if price.limit is not None and price.limit <= ZERO:
            raise PlanError(f"{meter}: a limit must be positive")
        prices[meter] = MeterPrice(_model(meter, price), price.included, price.limit)
    if spec.flat_fee < ZERO or spec.minimum_spend < ZERO:
        raise PlanError("flat_fee and minimum_spend must not be negative")
    return Plan(spec.name, version, spec.currency, prices, spec.flat_fee, spec.minimum_spend)

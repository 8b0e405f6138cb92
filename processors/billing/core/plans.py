"""Plan specs (``schemas.plans_v1``) as the pricing engine's plans, checked on the way."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from processors.billing.core.money import Money
from processors.billing.core.pricing import (
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
from schemas.plans_v1 import PlanSpec, PriceSpec

ZERO = Decimal(0)
T = TypeVar("T")


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

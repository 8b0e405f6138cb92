"""Pricing: usage quantities and a plan in, exact charges out. Pure code, no I/O.

Price models per meter, as Stripe Billing and Lago users know them:

- ``PerUnit``: every billable unit at one price.
- ``Graduated``: each tier prices the units that fall inside it (the first 1,000 at 0.01,
  the next 9,000 at 0.008, ...); a tier's flat fee is charged when any unit falls in it.
- ``Volume``: the tier the whole billable quantity falls in prices every unit, plus that
  tier's flat fee.
- ``Package``: every started package of ``size`` units costs ``price`` (rounded up).

``included`` units per meter are free and are taken off before any model applies; zero
billable units cost nothing under every model. A plan adds a flat fee per period and may
set a minimum spend: when the priced lines come to less, a top-up line makes up the rest.
Every line is computed exactly and rounded once, half-up, to the currency's minor unit
(``processors.billing.core.money``); the subtotal is the sum of rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from processors.billing.core.money import Money, exactly, round_to_minor

ZERO = Decimal(0)


class PlanError(ValueError):
    """A plan that cannot price anything: the message says what to fix."""


@dataclass(frozen=True)
class Tier:
    #: Upper bound (inclusive) of the tier, in billable units; None for the last tier.
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclass(frozen=True)
class PerUnit:
    unit_price: Decimal


@dataclass(frozen=True)
class Graduated:
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Volume:
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Package:
    size: Decimal
    price: Decimal


PriceModel = PerUnit | Graduated | Volume | Package


@dataclass(frozen=True)
class MeterPrice:
    model: PriceModel
    included: Decimal = ZERO
    #: Hard limit per period; the gateway refuses usage past it (None: no limit).
    limit: Decimal | None = None


@dataclass(frozen=True)
class Plan:
    name: str
    version: int
    currency: str
    prices: Mapping[str, MeterPrice]
    flat_fee: Decimal = ZERO
    minimum_spend: Decimal = ZERO

    def __post_init__(self) -> None:
        Money(ZERO, self.currency)  # validates the currency
        for meter, price in self.prices.items():
            validate(meter, price)


@dataclass(frozen=True)
class TierCharge:
    """One tier's share of a meter's charge, for the invoice's tier breakdown."""

    tier: int
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True)
class MeterCharge:
    meter: str
    quantity: Decimal
    included: Decimal
    billable: Decimal
    tiers: tuple[TierCharge, ...]
    #: Exact, before rounding.
    exact: Decimal
    amount: Money


@dataclass(frozen=True)
class PricedUsage:
    plan: str
    plan_version: int
    lines: tuple[MeterCharge, ...]
    flat_fee: Money
    minimum_top_up: Money
    subtotal: Money
    unpriced_meters: tuple[str, ...] = field(default=())


def _check_tiers(meter: str, tiers: tuple[Tier, ...]) -> None:
    if not tiers:
        raise PlanError(f"{meter}: a tiered price needs at least one tier")
    bounds = [t.up_to for t in tiers]
    if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise PlanError(f"{meter}: only the last tier is open-ended (up_to null)")
    finite = [b for b in bounds if b is not None]
    if any(b <= ZERO for b in finite) or finite != sorted(set(finite)):
        raise PlanError(f"{meter}: tier bounds must be positive and strictly increasing")
    if any(t.unit_price < ZERO or t.flat_fee < ZERO for t in tiers):
        raise PlanError(f"{meter}: prices and fees must not be negative")


def validate(meter: str, price: MeterPrice) -> None:
    if price.included < ZERO:
        raise PlanError(f"{meter}: included quantity must not be negative")
    model = price.model
    if isinstance(model, Graduated | Volume):
        _check_tiers(meter, model.tiers)
    elif isinstance(model, Package):
        if model.size <= ZERO or model.price < ZERO:
            raise PlanError(f"{meter}: a package needs a positive size and a price >= 0")
    elif model.unit_price < ZERO:
        raise PlanError(f"{meter}: unit price must not be negative")


def _graduated(tiers: tuple[Tier, ...], billable: Decimal) -> list[TierCharge]:
    charges = []
    lower = ZERO
    for index, tier in enumerate(tiers, start=1):
        if billable <= lower:
            break
        upper = billable if tier.up_to is None else min(billable, tier.up_to)
        units = upper - lower
        charges.append(TierCharge(index, units, tier.unit_price, tier.flat_fee,
                                  units * tier.unit_price + tier.flat_fee))
        lower = upper if tier.up_to is None else tier.up_to
    return charges


def _volume(tiers: tuple[Tier, ...], billable: Decimal) -> list[TierCharge]:
    for index, tier in enumerate(tiers, start=1):
        if tier.up_to is None or billable <= tier.up_to:
            return [TierCharge(index, billable, tier.unit_price, tier.flat_fee,
                               billable * tier.unit_price + tier.flat_fee)]
    raise AssertionError("validated tiers end with an open tier")


@exactly
def charge_meter(meter: str, price: MeterPrice, quantity: Decimal, currency: str) -> MeterCharge:
    billable = max(ZERO, quantity - price.included)
    model = price.model
    tiers: list[TierCharge] = []
    if billable > ZERO:
        if isinstance(model, PerUnit):
            tiers = [TierCharge(1, billable, model.unit_price, ZERO, billable * model.unit_price)]
        elif isinstance(model, Graduated):
            tiers = _graduated(model.tiers, billable)
        elif isinstance(model, Volume):
            tiers = _volume(model.tiers, billable)
        else:
            # Started packages, as an exact integer ceiling (no division that could round).
            whole, rest = divmod(billable, model.size)
            packages = whole + (1 if rest else 0)
            tiers = [TierCharge(1, billable, model.price, ZERO, packages * model.price)]
    exact = sum((t.amount for t in tiers), ZERO)
    return MeterCharge(meter, quantity, price.included, billable, tuple(tiers), exact,
                       Money(round_to_minor(exact, currency), currency))


@exactly
def price_usage(plan: Plan, usage: Mapping[str, Decimal]) -> PricedUsage:
    """Price one period's usage (meter -> quantity) under ``plan``."""
    currency = plan.currency
    lines = tuple(
        charge_meter(meter, plan.prices[meter], usage.get(meter, ZERO), currency)
        for meter in sorted(plan.prices)
    )
    flat = Money(round_to_minor(plan.flat_fee, currency), currency)
    priced = sum((line.amount.amount for line in lines), flat.amount)
    minimum = round_to_minor(plan.minimum_spend, currency)
    top_up = Money(max(ZERO, minimum - priced), currency)
    return PricedUsage(
        plan=plan.name, plan_version=plan.version, lines=lines, flat_fee=flat,
        minimum_top_up=top_up, subtotal=Money(priced + top_up.amount, currency),
        unpriced_meters=tuple(sorted(set(usage) - set(plan.prices))),
    )

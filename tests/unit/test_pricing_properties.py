"""Invoices against a deliberately naive reference, on 10,000+ random scenarios.

Each scenario is a plan, one period's usage, the moment the plan took effect (the flat fee
and the minimum are prorated from it, to the second) and a tax rate; it goes through
``compose_invoice``. The reference computes every line exactly with ``fractions.Fraction``
and rounds half-up once, by its own arithmetic:

- small scenarios (quantities in halves, up to 1,500) walk the quantity half a unit at a
  time and ask, for every step, which tier it falls in: slow and obviously right;
- large scenarios (quantities and prices up to the API's bounds, docs/billing.md) compute
  each tier's share of the quantity as fractions.

Zero minor-unit difference is required on every line of every scenario.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.billing.core.invoice import (
    BillingParty,
    InvoiceDocument,
    Party,
    PlanAssignment,
    compose_invoice,
)
from processors.billing.core.pricing import (
    Graduated,
    MeterPrice,
    Package,
    PerUnit,
    Plan,
    Tier,
    Volume,
)
from processors.usage.core.periods import period_bounds
from schemas.currencies import MINOR_UNITS

HALF = Decimal("0.5")
PERIODS = ("2026-02", "2026-11", "2026-12", "2028-02")  # 28, 30, 31 and 29 days
#: The API's bounds (schemas/plans_v1.py): quantities and amounts below 10^15 with 9
#: decimals, unit prices below 10^12 with 12.
BIG_QUANTITY = Decimal("999999999999999.999999999")
BIG_PRICE = Decimal("999999999999.999999999999")


def decimals(top: Decimal | int, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=0, max_value=top, places=places, allow_nan=False,
                       allow_infinity=False)


small_prices = decimals(50, 4)
small_fees = decimals(100, 2)
small_quantities = st.integers(min_value=0, max_value=3000).map(lambda n: Decimal(n) * HALF)
big_prices = st.one_of(decimals(BIG_PRICE, 12), decimals(1, 12))
big_fees = st.one_of(decimals(BIG_QUANTITY, 9), decimals(100_000, 9))
big_quantities = st.one_of(decimals(BIG_QUANTITY, 9), decimals(10_000, 9))


@st.composite
def tiers(draw: st.DrawFn, big: bool) -> tuple[Tier, ...]:
    bound = (decimals(BIG_QUANTITY, 9).filter(lambda d: d > 0) if big
             else st.integers(1, 1200).map(Decimal))
    prices, fees = (big_prices, big_fees) if big else (small_prices, small_fees)
    bounds = sorted(set(draw(st.lists(bound, min_size=0, max_size=4))))
    rows = [Tier(b, draw(prices), draw(fees)) for b in bounds]
    rows.append(Tier(None, draw(prices), draw(fees)))
    return tuple(rows)


def models(big: bool) -> st.SearchStrategy[PerUnit | Graduated | Volume | Package]:
    prices, fees = (big_prices, big_fees) if big else (small_prices, small_fees)
    size = (decimals(BIG_QUANTITY, 9).filter(lambda d: d > 0) if big
            else st.integers(1, 500).map(Decimal))
    return st.one_of(prices.map(PerUnit), tiers(big).map(Graduated), tiers(big).map(Volume),
                     st.builds(Package, size, fees))


@st.composite
def starts(draw: st.DrawFn, period: str) -> datetime:
    """When the plan took effect: before the period (the whole of it), or inside it, to
    the microsecond (proration counts whole seconds)."""
    start, end = period_bounds(period)
    if draw(st.booleans()):
        return start - timedelta(days=draw(st.integers(0, 40)))
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=draw(st.integers(0, seconds - 1)),
                             microseconds=draw(st.integers(0, 999_999)))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Plan, dict[str, Decimal], str, datetime,
                                        Decimal | None, bool]:
    big = draw(st.booleans())
    fees = big_fees if big else small_fees
    quantities = big_quantities if big else small_quantities
    meters = draw(st.lists(st.sampled_from(["api", "tokens", "storage", "seats"]),
                           min_size=1, max_size=4, unique=True))
    included = (decimals(10_000, 9) if big
                else st.integers(0, 200).map(lambda n: Decimal(n) * HALF))
    plan = Plan(
        name="p", version=1, currency=draw(st.sampled_from(sorted(MINOR_UNITS))),
        prices={m: MeterPrice(draw(models(big)), draw(included)) for m in meters},
        flat_fee=draw(fees), minimum_spend=draw(st.sampled_from([Decimal(0), draw(fees)])),
    )
    usage = {m: draw(quantities) for m in meters}
    period = draw(st.sampled_from(PERIODS))
    tax = draw(st.one_of(st.none(), decimals(100, 4)))
    return plan, usage, period, draw(starts(period)), tax, big


# ---- the reference ------------------------------------------------------------------------


def _round(value: Fraction, currency: str) -> int:
    """Half-up (values here are >= 0) to whole minor units."""
    return floor(value * 10 ** MINOR_UNITS[currency] + Fraction(1, 2))


def _tier_of(tiers: tuple[Tier, ...], position: Fraction) -> int:
    for index, tier in enumerate(tiers):
        if tier.up_to is None or position <= Fraction(tier.up_to):
            return index
    raise AssertionError("unreachable")


def _walked(price: MeterPrice, billable: Fraction) -> Fraction:
    """Half a unit at a time (small scenarios: every half-unit step lies in one tier)."""
    steps = int(billable * 2)
    model = price.model
    if isinstance(model, PerUnit):
        return sum((Fraction(model.unit_price) / 2 for _ in range(steps)), Fraction(0))
    if isinstance(model, Graduated):
        total, used = Fraction(0), set()
        for k in range(1, steps + 1):
            index = _tier_of(model.tiers, Fraction(k, 2))
            total += Fraction(model.tiers[index].unit_price) / 2
            used.add(index)
        return total + sum((Fraction(model.tiers[i].flat_fee) for i in used), Fraction(0))
    assert isinstance(model, Volume)
    tier = model.tiers[_tier_of(model.tiers, billable)]
    return (sum((Fraction(tier.unit_price) / 2 for _ in range(steps)), Fraction(0))
            + Fraction(tier.flat_fee))


def _by_tier(price: MeterPrice, billable: Fraction) -> Fraction:
    """Each tier's share of the quantity, as fractions (large scenarios)."""
    model = price.model
    if isinstance(model, PerUnit):
        return billable * Fraction(model.unit_price)
    if isinstance(model, Graduated):
        total, lower = Fraction(0), Fraction(0)
        for tier in model.tiers:
            upper = billable if tier.up_to is None else min(billable, Fraction(tier.up_to))
            if upper > lower:
                total += (upper - lower) * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
            if tier.up_to is not None:
                lower = max(lower, Fraction(tier.up_to))
        return total
    assert isinstance(model, Volume)
    tier = model.tiers[_tier_of(model.tiers, billable)]
    return billable * Fraction(tier.unit_price) + Fraction(tier.flat_fee)


def _meter(price: MeterPrice, quantity: Decimal, big: bool) -> Fraction:
    billable = max(Fraction(0), Fraction(quantity) - Fraction(price.included))
    if billable == 0:
        return Fraction(0)
    model = price.model
    if isinstance(model, Package):
        if big:
            packages = -(-billable // Fraction(model.size))  # a ceiling, in integers
        else:
            packages, left = 0, billable
            while left > 0:
                packages += 1
                left -= Fraction(model.size)
        return packages * Fraction(model.price)
    return _by_tier(price, billable) if big else _walked(price, billable)


def _expected(plan: Plan, usage: dict[str, Decimal], period: str, start: datetime,
              tax: Decimal | None, big: bool) -> dict[str, object]:
    currency = plan.currency
    begin, end = period_bounds(period)
    second = timedelta(seconds=1)
    share = Fraction((end - max(start, begin)) // second, (end - begin) // second)
    lines = {m: _round(_meter(p, usage[m], big), currency) for m, p in plan.prices.items()}
    flat = _round(Fraction(plan.flat_fee) * share, currency) if plan.flat_fee else None
    priced = sum(lines.values()) + (flat or 0)
    minimum = _round(Fraction(plan.minimum_spend) * share, currency)
    top_up = minimum - priced if minimum > priced else None
    subtotal = priced + (top_up or 0)
    scale = 10 ** MINOR_UNITS[currency]
    tax_minor = 0 if tax is None else _round(Fraction(subtotal, scale) * Fraction(tax) / 100,
                                             currency)
    return {"usage": lines, "flat": flat, "top_up": top_up, "subtotal": subtotal,
            "tax": tax_minor, "total": subtotal + tax_minor}


def _actual(doc: InvoiceDocument) -> dict[str, object]:
    def kind(k: str) -> int | None:
        found = [line.amount.minor for line in doc.lines if line.kind == k]
        return found[0] if found else None

    return {"usage": {line.meter: line.amount.minor for line in doc.lines
                      if line.kind == "usage"},
            "flat": kind("flat_fee"), "top_up": kind("minimum"),
            "subtotal": doc.subtotal.minor, "tax": doc.tax.minor, "total": doc.total.minor}


@settings(max_examples=10_000, deadline=None)
@given(scenarios())
def test_invoices_match_the_naive_reference(
        scenario: tuple[Plan, dict[str, Decimal], str, datetime, Decimal | None, bool]) -> None:
    plan, usage, period, start, tax, big = scenario
    doc = compose_invoice(BillingParty("t", plan.currency, Party("Buyer"), tax),
                          Party("Seller"), period, [PlanAssignment(start, plan)], usage,
                          period_bounds(period)[1])
    assert doc is not None
    assert _actual(doc) == _expected(plan, usage, period, start, tax, big)
    assert doc.subtotal.currency == plan.currency

"""The pricing engine against a deliberately naive reference, on 10,000+ random scenarios.

The reference walks the quantity half a unit at a time and asks, for every step, which tier
it falls in: slow and obviously right. Quantities are multiples of 0.5 and tier bounds
whole numbers, so every half-unit step lies inside one tier. Zero minor-unit difference
is required on every scenario.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.billing.core.pricing import (
    Graduated,
    MeterPrice,
    Package,
    PerUnit,
    Plan,
    Tier,
    Volume,
    price_usage,
)
from schemas.currencies import MINOR_UNITS

HALF = Decimal("0.5")

prices = st.decimals(min_value=0, max_value=50, places=4, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
quantities = st.integers(min_value=0, max_value=3000).map(lambda n: Decimal(n) * HALF)


@st.composite
def tiers(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(1, 1200), min_size=0, max_size=4))))
    rows = [Tier(Decimal(b), draw(prices), draw(fees)) for b in bounds]
    rows.append(Tier(None, draw(prices), draw(fees)))
    return tuple(rows)


models = st.one_of(
    prices.map(PerUnit),
    tiers().map(Graduated),
    tiers().map(Volume),
    st.builds(Package, st.integers(1, 500).map(Decimal), fees),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Plan, dict[str, Decimal]]:
    meters = draw(st.lists(st.sampled_from(["api", "tokens", "storage", "seats"]),
                           min_size=1, max_size=4, unique=True))
    plan = Plan(
        name="p", version=1, currency=draw(st.sampled_from(sorted(MINOR_UNITS))),
        prices={m: MeterPrice(draw(models), Decimal(draw(st.integers(0, 200))) * HALF)
                for m in meters},
        flat_fee=draw(fees), minimum_spend=draw(st.sampled_from([Decimal(0), draw(fees)])),
    )
    usage = {m: draw(quantities) for m in meters}
    return plan, usage


def _tier_of(tiers: tuple[Tier, ...], position: Decimal) -> int:
    for index, tier in enumerate(tiers):
        if tier.up_to is None or position <= tier.up_to:
            return index
    raise AssertionError("unreachable")


def _naive_meter(price: MeterPrice, quantity: Decimal) -> Decimal:
    billable = quantity - price.included if quantity > price.included else Decimal(0)
    steps = int(billable / HALF)
    model = price.model
    if steps == 0:
        return Decimal(0)
    if isinstance(model, PerUnit):
        return sum((model.unit_price * HALF for _ in range(steps)), Decimal(0))
    if isinstance(model, Graduated):
        total, used = Decimal(0), set()
        for k in range(1, steps + 1):
            index = _tier_of(model.tiers, k * HALF)
            total += model.tiers[index].unit_price * HALF
            used.add(index)
        return total + sum((model.tiers[i].flat_fee for i in used), Decimal(0))
    if isinstance(model, Volume):
        tier = model.tiers[_tier_of(model.tiers, billable)]
        return sum((tier.unit_price * HALF for _ in range(steps)), Decimal(0)) + tier.flat_fee
    packages, left = 0, billable
    while left > 0:
        packages += 1
        left -= model.size
    return model.price * packages


def _minor(amount: Decimal, currency: str) -> int:
    places = MINOR_UNITS[currency]
    return int(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
               .scaleb(places))


@settings(max_examples=10_000, deadline=None)
@given(scenarios())
def test_engine_matches_naive_reference(scenario: tuple[Plan, dict[str, Decimal]]) -> None:
    plan, usage = scenario
    priced = price_usage(plan, usage)
    expected_lines = {m: _minor(_naive_meter(p, usage[m]), plan.currency)
                      for m, p in plan.prices.items()}
    assert {line.meter: line.amount.minor for line in priced.lines} == expected_lines
    flat = _minor(plan.flat_fee, plan.currency)
    minimum = _minor(plan.minimum_spend, plan.currency)
    expected_total = max(sum(expected_lines.values()) + flat, minimum)
    assert priced.subtotal.minor == expected_total
    assert priced.subtotal.currency == plan.currency

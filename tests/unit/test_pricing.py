"""Pricing examples a reader can check by hand, and plans that are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from processors.billing.core.money import CurrencyError, Money, round_to_minor
from processors.billing.core.pricing import (
    Graduated,
    MeterPrice,
    Package,
    PerUnit,
    Plan,
    PlanError,
    Tier,
    Volume,
    price_usage,
)

D = Decimal
TIERS = (Tier(D(1000), D("0.01")), Tier(D(10000), D("0.008"), D(5)), Tier(None, D("0.005")))


def _one(model: object, quantity: str, included: str = "0", currency: str = "EUR") -> Money:
    plan = Plan("p", 1, currency, {"m": MeterPrice(model, D(included))})  # type: ignore[arg-type]
    return price_usage(plan, {"m": D(quantity)}).lines[0].amount


def test_graduated_prices_each_tier_and_charges_flat_fees_of_used_tiers() -> None:
    # 1000 x 0.01 + 9000 x 0.008 + 5 (flat, tier 2) + 2000 x 0.005 = 10 + 72 + 5 + 10
    assert _one(Graduated(TIERS), "12000") == Money(D("97.00"), "EUR")
    assert _one(Graduated(TIERS), "500") == Money(D("5.00"), "EUR")


def test_volume_prices_every_unit_at_the_tier_reached() -> None:
    assert _one(Volume(TIERS), "12000") == Money(D("60.00"), "EUR")
    assert _one(Volume(TIERS), "5000") == Money(D("45.00"), "EUR")  # 5000 x 0.008 + 5


def test_package_rounds_started_packages_up_and_included_units_are_free() -> None:
    assert _one(Package(D(100), D("2.50")), "201") == Money(D("7.50"), "EUR")
    assert _one(Package(D(100), D("2.50")), "300", included="100") == Money(D("5.00"), "EUR")
    assert _one(PerUnit(D("0.02")), "99", included="100") == Money(D("0.00"), "EUR")


def test_rounding_is_half_up_per_line_in_minor_units() -> None:
    assert _one(PerUnit(D("0.005")), "1") == Money(D("0.01"), "EUR")
    assert _one(PerUnit(D("0.4")), "1", currency="JPY") == Money(D("0"), "JPY")
    assert _one(PerUnit(D("0.0005")), "1", currency="KWD") == Money(D("0.001"), "KWD")
    assert round_to_minor(D("2.345"), "USD") == D("2.35")


def test_flat_fee_and_minimum_spend() -> None:
    plan = Plan("p", 2, "USD", {"m": MeterPrice(PerUnit(D("0.10")))}, flat_fee=D(10),
                minimum_spend=D(50))
    priced = price_usage(plan, {"m": D(100), "unknown": D(3)})
    assert priced.subtotal == Money(D("50.00"), "USD")
    assert priced.minimum_top_up == Money(D("30.00"), "USD")
    assert priced.unpriced_meters == ("unknown",)
    assert price_usage(plan, {"m": D(1000)}).minimum_top_up.amount == 0


@pytest.mark.parametrize(("model", "message"), [
    (Graduated(()), "at least one tier"),
    (Graduated((Tier(D(10), D(1)),)), "open-ended"),
    (Volume((Tier(D(10), D(1)), Tier(D(5), D(1)), Tier(None, D(1)))), "strictly increasing"),
    (Package(D(0), D(1)), "positive size"),
    (PerUnit(D(-1)), "negative"),
])
def test_invalid_plans_are_refused(model: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan("p", 1, "EUR", {"m": MeterPrice(model)})  # type: ignore[arg-type]


def test_money_never_mixes_currencies_or_floats() -> None:
    with pytest.raises(CurrencyError):
        Money(D(1), "EUR") + Money(D(1), "USD")
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(CurrencyError):
        Money(D(1), "XXX")

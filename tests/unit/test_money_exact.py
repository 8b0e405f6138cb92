"""Money exact in every tie: a line is half-up of its exact value, however close to a tie.

The three cases an independent reference found wrong (issue 16), ties generated on purpose
for proration and for per-unit products, and the rounding and context rules underneath.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.billing.core.invoice import (
    BillingParty,
    InvoiceDocument,
    Party,
    PlanAssignment,
    compose_invoice,
)
from processors.billing.core.money import EXACT, Money, half_up, round_to_minor
from processors.billing.core.pricing import MeterPrice, PerUnit, Plan
from processors.usage.core.periods import period_bounds
from schemas.currencies import MINOR_UNITS

D = Decimal
DECEMBER = "2026-12"


def invoice(plan: Plan, start: datetime, usage: dict[str, Decimal] | None = None,
            period: str = DECEMBER) -> InvoiceDocument:
    doc = compose_invoice(BillingParty("t", plan.currency, Party("Buyer")), Party("Seller"),
                          period, [PlanAssignment(start, plan)], usage or {},
                          period_bounds(period)[1])
    assert doc is not None
    return doc


def line(doc: InvoiceDocument, kind: str) -> Fraction:
    (found,) = [Fraction(ln.amount.amount) for ln in doc.lines if ln.kind == kind]
    return found


def reference(value: Fraction, currency: str) -> Fraction:
    """Half-up of an exact non-negative value, by floor(x + 1/2): not Meterly's code."""
    scale = 10 ** MINOR_UNITS[currency]
    return Fraction(floor(value * scale + Fraction(1, 2)), scale)


# ---- the three cases of issue 16 -----------------------------------------------------------


def test_a_prorated_flat_fee_on_a_tie_rounds_up() -> None:
    # 10044 x 2,636,988 s / 2,678,400 s = 9888.705 exactly.
    plan = Plan("p", 1, "EUR", {}, flat_fee=D(10044))
    doc = invoice(plan, datetime(2026, 12, 1, 11, 30, 12, tzinfo=UTC))
    assert line(doc, "flat_fee") == Fraction("9888.71")


def test_a_prorated_minimum_on_a_tie_rounds_up() -> None:
    # 101444.4 KWD x 2,629,228 s / 2,678,400 s = 99582.0105 exactly.
    plan = Plan("p", 1, "KWD", {}, minimum_spend=D("101444.4"))
    doc = invoice(plan, datetime(2026, 12, 1, 13, 39, 32, tzinfo=UTC))
    assert line(doc, "minimum") == Fraction("99582.011")


def test_a_large_product_is_not_rounded_before_its_line_is() -> None:
    # 0.999999999 x 890000005000001.000000001 = 890000004110000.994999999999999999 exactly;
    # rounded to 28 digits first it became a tie and went up.
    plan = Plan("p", 1, "EUR", {"tokens": MeterPrice(PerUnit(D("0.999999999")))})
    doc = invoice(plan, datetime(2026, 11, 1, tzinfo=UTC),
                  {"tokens": D("890000005000001.000000001")})
    assert line(doc, "usage") == Fraction("890000004110000.99")


# ---- generated ties ------------------------------------------------------------------------

WHOLE = {p: (period_bounds(p)[1] - period_bounds(p)[0]) // timedelta(seconds=1)
         for p in ("2026-02", "2026-11", "2026-12")}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


DIVISORS = {p: [d for d in divisors(w) if d < w] for p, w in WHOLE.items()}


@st.composite
def prorated_ties(draw: st.DrawFn) -> tuple[str, str, int, Decimal]:
    """A fee whose prorated share is exactly a half minor unit off the grid: in force for
    ``seconds``, a divisor of the period's length, so that fee x seconds / whole is the
    finite decimal (2n+1) / (2 x 10^places)."""
    period = draw(st.sampled_from(sorted(WHOLE)))
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    seconds = draw(st.sampled_from(DIVISORS[period]))
    places = MINOR_UNITS[currency]
    n = draw(st.integers(0, 10**9))
    fee = Fraction(2 * n + 1, 2 * 10**places) * Fraction(WHOLE[period], seconds)
    with localcontext(EXACT):
        decimal_fee = Decimal(fee.numerator) / Decimal(fee.denominator)
    return period, currency, seconds, decimal_fee


@settings(max_examples=2_000, deadline=None)
@given(prorated_ties(), st.booleans())
def test_prorated_ties_round_half_up(tie: tuple[str, str, int, Decimal], as_minimum: bool
                                     ) -> None:
    period, currency, seconds, fee = tie
    start = period_bounds(period)[1] - timedelta(seconds=seconds)
    plan = (Plan("p", 1, currency, {}, minimum_spend=fee) if as_minimum
            else Plan("p", 1, currency, {}, flat_fee=fee))
    exact = Fraction(fee) * Fraction(seconds, WHOLE[period])
    assert (exact * 10 ** MINOR_UNITS[currency] * 2) % 2 == 1  # really a tie
    doc = invoice(plan, start, period=period)
    assert line(doc, "minimum" if as_minimum else "flat_fee") == reference(exact, currency)


@settings(max_examples=2_000, deadline=None)
@given(st.sampled_from(sorted(MINOR_UNITS)), st.integers(0, 10**12), st.integers(0, 9),
       st.integers(0, 9), st.integers(0, 3))
def test_per_unit_ties_round_half_up(currency: str, n: int, twos: int, fives: int,
                                     shift: int) -> None:
    """quantity x price = (2n+1) / (2 x 10^places) exactly, with quantity = 2^a 5^b / 10^s."""
    places = MINOR_UNITS[currency]
    quantity = Fraction(2**twos * 5**fives, 10**shift)
    price = Fraction(2 * n + 1, 2 * 10**places) / quantity
    with localcontext(EXACT):
        q = Decimal(quantity.numerator) / Decimal(quantity.denominator)
        p = Decimal(price.numerator) / Decimal(price.denominator)
    plan = Plan("p", 1, currency, {"m": MeterPrice(PerUnit(p))})
    doc = invoice(plan, datetime(2026, 1, 1, tzinfo=UTC), {"m": q})
    assert line(doc, "usage") == reference(quantity * price, currency)


@settings(max_examples=3_000, deadline=None)
@given(st.sampled_from(sorted(MINOR_UNITS)), st.sampled_from(sorted(WHOLE)),
       st.decimals(0, D("999999999999999.999999999"), places=9),
       st.decimals(0, D("999999999999999.999999999"), places=9),
       st.decimals(0, D("999999999999.999999999999"), places=12),
       st.decimals(0, D("999999999999999.999999999"), places=9),
       st.integers(0, 10**7), st.integers(0, 999_999))
def test_random_fees_minimums_prices_quantities_and_starts(
        currency: str, period: str, fee: Decimal, minimum: Decimal, price: Decimal,
        quantity: Decimal, offset_seconds: int, micros: int) -> None:
    start, end = period_bounds(period)
    offset = min(offset_seconds, WHOLE[period] - 1)
    begins = start + timedelta(seconds=offset, microseconds=micros)
    plan = Plan("p", 1, currency, {"m": MeterPrice(PerUnit(price))}, flat_fee=fee,
                minimum_spend=minimum)
    doc = invoice(plan, begins, {"m": quantity}, period=period)
    share = Fraction((end - begins) // timedelta(seconds=1), WHOLE[period])
    usage = reference(Fraction(quantity) * Fraction(price), currency)
    flat = reference(Fraction(fee) * share, currency)
    assert line(doc, "usage") == usage
    if fee:
        assert line(doc, "flat_fee") == flat
    floor_ = reference(Fraction(minimum) * share, currency)
    top_ups = [Fraction(ln.amount.amount) for ln in doc.lines if ln.kind == "minimum"]
    assert top_ups == ([floor_ - usage - flat] if floor_ > usage + flat else [])


# ---- the rules underneath ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "currency", "rounded"), [
    (Fraction(1, 200), "EUR", "0.01"), (Fraction(-1, 200), "EUR", "-0.01"),
    (Fraction(1, 2), "JPY", "1"), (Fraction(3, 2000), "KWD", "0.002"),
    (Fraction(4999999999, 10**12), "EUR", "0.00"), (Fraction(-1, 1000), "EUR", "0.00"),
    (D("0.005"), "EUR", "0.01"), (D("2.675"), "EUR", "2.68"),  # 2.675 is no float here
])
def test_round_to_minor(value: Fraction | Decimal, currency: str, rounded: str) -> None:
    assert str(round_to_minor(value, currency)) == rounded


def test_half_up_goes_away_from_zero() -> None:
    assert [half_up(Fraction(n, 2)) for n in (-3, -1, 1, 3)] == [-2, -1, 1, 2]
    assert half_up(Fraction(10**60 + 1, 2)) == (10**60) // 2 + 1


def test_the_exact_context_refuses_to_round() -> None:
    with localcontext(EXACT):
        assert D("890000005000001.000000001") * D("0.999999999") == D(
            "890000004110000.994999999999999999")
        with pytest.raises(Inexact):
            D(1) / D(3)


def test_minor_units_of_large_amounts_are_exact() -> None:
    big = Money(D("117466140310120933347944459.67"), "AUD")
    assert big.minor == 11746614031012093334794445967
    with pytest.raises(ValueError, match="whole number of minor units"):
        _ = Money(D("0.001"), "EUR").minor


# ---- the API's bounds ----------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("flat_fee", "1e30"), ("flat_fee", "0.0000000001"), ("minimum_spend", "1234567890123456"),
    ("unit_price", "1e13"), ("unit_price", "0.0000000000001"),
    ("included", "1234567890123456"), ("package_size", "0.0000000001"),
])
def test_plan_amounts_beyond_the_bounds_are_refused(field: str, value: str) -> None:
    from pydantic import ValidationError

    from schemas.plans_v1 import PlanSpec

    price: dict[str, object] = {"model": "per_unit", "unit_price": "0.01"}
    spec: dict[str, object] = {"name": "p", "currency": "EUR", "prices": {"m": price}}
    if field in ("flat_fee", "minimum_spend"):
        spec[field] = value
    elif field == "package_size":
        price.update(model="package", package_size=value, package_price="1")
    else:
        price[field] = value
    with pytest.raises(ValidationError, match=field):
        PlanSpec.model_validate(spec)
    price.update({"model": "per_unit", "unit_price": "999999999999.999999999999"})
    spec.pop("flat_fee", None)
    spec.pop("minimum_spend", None)
    price.pop("included", None)
    price.pop("package_size", None)
    price.pop("package_price", None)
    PlanSpec.model_validate(spec)  # the largest unit price is accepted


def test_credits_and_tax_rates_beyond_the_bounds_are_refused() -> None:
    from pydantic import ValidationError

    from schemas.api_v1 import CreditCreate, TenantCreate

    with pytest.raises(ValidationError, match="amount"):
        CreditCreate(amount=D("1e16"), currency="EUR", description="x")
    CreditCreate(amount=D("999999999999999.999999999"), currency="EUR", description="x")
    with pytest.raises(ValidationError, match="tax_rate"):
        TenantCreate(name="a", billing_email="a@b.test", currency="EUR",
                     tax_rate=D("19.00001"))

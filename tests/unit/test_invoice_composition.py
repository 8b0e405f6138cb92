"""Invoice composition examples a reader can check by hand.

Every expected amount is worked out in the comment next to it, never by calling the code
under test. Period 2026-11 has 30 days (2,592,000 s), so a change on 2026-11-16T00:00Z
splits it 15/30 + 15/30.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.billing.closer import scheduled_commands
from processors.billing.core.close import (
    counted_through,
    due_period,
    first_period,
    periods_to_sweep,
    unfinished,
)
from processors.billing.core.invoice import (
    BillingParty,
    Credit,
    CreditApplication,
    InvoiceDocument,
    InvoiceLine,
    InvoiceStatus,
    LateUsage,
    Party,
    PlanAssignment,
    billed_amount,
    billed_so_far,
    compose_invoice,
    credit_spent,
    format_number,
    invoice_id,
)
from processors.billing.core.money import Money
from processors.billing.core.pricing import (
    Graduated,
    MeterPrice,
    PerUnit,
    Plan,
    Tier,
    TierCharge,
    Volume,
)
from processors.tenants.core.directory import Directory
from schemas.admin_v1 import Assignment, Subscription
from schemas.billing_commands_v1 import CloseCommand

D = Decimal
NOV = "2026-11"
ISSUED = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
SELLER = Party("Meterly GmbH", ("Hauptstr. 1", "10115 Berlin"), "billing@meterly.example",
               "DE123456789")
BUYER = Party("Acme Corp", ("1 Infinite Loop",), "ap@acme.example")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def eur(amount: str) -> Money:
    return Money(D(amount), "EUR")


def party(tax_rate: str | None = None, terms: int = 30, currency: str = "EUR") -> BillingParty:
    return BillingParty("acme", currency, BUYER,
                        None if tax_rate is None else D(tax_rate), terms)


def compose(assignments: list[PlanAssignment], usage: Mapping[str, Decimal] | None = None, *,
            tax_rate: str | None = None, late: Sequence[LateUsage] = (),
            credits: Sequence[Credit] = (),
            spent: Mapping[str, Decimal] | None = None) -> InvoiceDocument:
    """compose_invoice for tenant acme, period 2026-11, issued 2026-12-01T02:00Z."""
    doc = compose_invoice(party(tax_rate), SELLER, NOV, assignments, usage or {}, ISSUED,
                          late, credits, spent)
    assert doc is not None
    return doc


def lines_of(doc: InvoiceDocument, kind: str) -> list[InvoiceLine]:
    return [line for line in doc.lines if line.kind == kind]


# ---- a whole period under one plan ------------------------------------------------------

TIERS = (Tier(D(1000), D("0.01")), Tier(D(10000), D("0.008"), D(5)), Tier(None, D("0.005")))
PRO_V3 = Plan("pro", 3, "EUR", {
    "api.calls": MeterPrice(Graduated(TIERS), included=D(500)),
    "events": MeterPrice(PerUnit(D("0.005"))),
    "storage.gb": MeterPrice(PerUnit(D("0.67"))),
}, flat_fee=D(49))


def test_whole_period_usage_tiers_flat_fee_tax_total_and_due_date() -> None:
    doc = compose_invoice(
        party("19", terms=14), SELLER, NOV, [PlanAssignment(utc(2026, 1, 1), PRO_V3)],
        {"api.calls": D(12500), "events": D(697), "storage.gb": D(3)}, ISSUED)
    assert doc is not None
    assert doc.lines == (
        # 12500 - 500 included = 12000 billable:
        # 1000 x 0.01 = 10 | 9000 x 0.008 + 5 (tier fee) = 77 | 2000 x 0.005 = 10 -> 97.00
        InvoiceLine("usage", "api.calls", NOV, eur("97.00"), "api.calls", D(12500), D(500), (
            TierCharge(1, D(1000), D("0.01"), D(0), D(10)),
            TierCharge(2, D(9000), D("0.008"), D(5), D(77)),
            TierCharge(3, D(2000), D("0.005"), D(0), D(10)),
        )),
        # 697 x 0.005 = 3.485 -> 3.49 half-up (half-even would give 3.48)
        InvoiceLine("usage", "events", NOV, eur("3.49"), "events", D(697), D(0),
                    (TierCharge(1, D(697), D("0.005"), D(0), D("3.485")),)),
        # 3 x 0.67 = 2.01
        InvoiceLine("usage", "storage.gb", NOV, eur("2.01"), "storage.gb", D(3), D(0),
                    (TierCharge(1, D(3), D("0.67"), D(0), D("2.01")),)),
        # whole period: no proration, no date range in the text
        InvoiceLine("flat_fee", "pro v3 base fee", NOV, eur("49.00")),
    )
    assert doc.subtotal == eur("151.50")  # 97.00 + 3.49 + 2.01 + 49.00
    assert doc.tax_rate == D(19)
    assert doc.tax == eur("28.79")  # 151.50 x 0.19 = 28.785 -> 28.79 half-up
    assert doc.total == eur("180.29")  # 151.50 + 28.79
    assert doc.credits == ()
    assert doc.credits_applied == eur("0")
    assert doc.amount_due == eur("180.29")
    assert doc.credit_balance == eur("0")
    assert doc.issued_at == ISSUED
    assert doc.due_at == utc(2026, 12, 15, 2, 0)  # issued + 14 days
    assert doc.period_start == utc(2026, 11, 1)
    assert doc.period_end == utc(2026, 12, 1)
    assert (doc.plan, doc.plan_version, doc.currency) == ("pro", 3, "EUR")
    assert (doc.tenant_id, doc.period, doc.id) == ("acme", NOV, invoice_id("acme", NOV))
    assert (doc.seller, doc.buyer) == (SELLER, BUYER)
    assert (doc.status, doc.number, doc.finalized_at, doc.voided_at) == ("draft", None, None,
                                                                        None)
    assert doc.billed_usage == {NOV: {"api.calls": D(12500), "events": D(697),
                                      "storage.gb": D(3)}}


def test_no_tax_rate_means_no_tax() -> None:
    doc = compose([PlanAssignment(utc(2026, 1, 1), PRO_V3)], {"storage.gb": D(10)})
    assert doc.tax_rate is None
    assert doc.tax == eur("0")
    # 10 x 0.67 = 6.70, + 49.00 fee (other meters used nothing: 0.00 lines)
    assert doc.subtotal == eur("55.70")
    assert doc.total == eur("55.70")
    assert [line.amount for line in lines_of(doc, "usage")] == [eur("0"), eur("0"), eur("6.70")]


# ---- plan changes and proration ----------------------------------------------------------

STARTER_V1 = Plan("starter", 1, "EUR", {"api.calls": MeterPrice(PerUnit(D("0.002")))},
                  flat_fee=D(20))
PRO_V2 = Plan("pro", 2, "EUR", {"api.calls": MeterPrice(PerUnit(D("0.001")), included=D(1000))},
              flat_fee=D(50))


def test_plan_change_mid_period_prorates_each_fee_and_prices_usage_with_final_plan() -> None:
    doc = compose([PlanAssignment(utc(2026, 10, 5), STARTER_V1),
                   PlanAssignment(utc(2026, 11, 16), PRO_V2)], {"api.calls": D(21000)})
    # usage at the final plan: (21000 - 1000 included) x 0.001 = 20.00 (starter would be 42.00)
    assert [(ln.meter, ln.amount) for ln in lines_of(doc, "usage")] == [("api.calls",
                                                                         eur("20.00"))]
    fees = lines_of(doc, "flat_fee")
    # starter 20 x 15/30 = 10.00 ; pro 50 x 15/30 = 25.00
    assert [ln.amount for ln in fees] == [eur("10.00"), eur("25.00")]
    assert fees[0].description.startswith("starter v1 base fee")
    assert fees[1].description.startswith("pro v2 base fee")
    assert all("prorated" in ln.description for ln in fees)
    assert lines_of(doc, "minimum") == []
    assert doc.subtotal == eur("55.00")  # 20 + 10 + 25
    assert (doc.plan, doc.plan_version) == ("pro", 2)


def test_proration_of_thirds_rounds_each_fee_half_up() -> None:
    doc = compose([PlanAssignment(utc(2026, 10, 5), STARTER_V1),
                   PlanAssignment(utc(2026, 11, 11), PRO_V2)])
    # 10 of 30 days: 20 x 1/3 = 6.666.. -> 6.67 ; 20 of 30 days: 50 x 2/3 = 33.333.. -> 33.33
    assert [ln.amount for ln in lines_of(doc, "flat_fee")] == [eur("6.67"), eur("33.33")]


def test_proration_is_by_the_second() -> None:
    # 25,920.00 a month = 0.01 per second of a 2,592,000 s month.
    a = Plan("a", 1, "EUR", {}, flat_fee=D(25920))
    b = Plan("b", 1, "EUR", {}, flat_fee=D(25920))
    doc = compose([PlanAssignment(utc(2026, 10, 1), a),
                   PlanAssignment(utc(2026, 11, 16, 0, 0, 1), b)])
    # a: 15 days + 1 s = 1,296,001 s -> 12,960.01 ; b: 1,295,999 s -> 12,959.99
    assert [ln.amount for ln in lines_of(doc, "flat_fee")] == [eur("12960.01"),
                                                               eur("12959.99")]


def test_assignment_starting_mid_period_prorates_its_fee() -> None:
    doc = compose([PlanAssignment(utc(2026, 11, 16), PRO_V2)])
    (fee,) = lines_of(doc, "flat_fee")
    assert fee.amount == eur("25.00")  # 50 x 15/30
    assert "prorated" in fee.description


def test_proration_rounds_to_the_currency_minor_unit() -> None:
    yen = Plan("jp", 1, "JPY", {}, flat_fee=D(1000))
    doc = compose_invoice(party(currency="JPY"), SELLER, NOV,
                          [PlanAssignment(utc(2026, 11, 11), yen)], {}, ISSUED)
    assert doc is not None
    # 20 of 30 days: 1000 x 2/3 = 666.67 -> 667 (JPY has no minor unit)
    assert doc.total == Money(D(667), "JPY")


@pytest.mark.parametrize("start", [utc(2026, 12, 1), utc(2027, 2, 1)])
def test_assignment_starting_at_or_after_period_end_gives_no_invoice(start: datetime) -> None:
    assert compose_invoice(party(), SELLER, NOV, [PlanAssignment(start, PRO_V2)], {},
                           ISSUED) is None


def test_no_assignment_gives_no_invoice() -> None:
    assert compose_invoice(party(), SELLER, NOV, [], {"api.calls": D(5)}, ISSUED) is None


@pytest.mark.parametrize("start", [utc(2026, 11, 1), utc(2025, 3, 9, 13, 45)])
def test_assignment_from_before_or_at_period_start_charges_the_full_fee(start: datetime) -> None:
    doc = compose([PlanAssignment(start, PRO_V2)])
    assert lines_of(doc, "flat_fee") == [InvoiceLine("flat_fee", "pro v2 base fee", NOV,
                                                     eur("50.00"))]


def test_assignments_before_the_period_are_superseded() -> None:
    # starter from March, pro from October: only pro is in force in November.
    doc = compose([PlanAssignment(utc(2026, 10, 1), PRO_V2),
                   PlanAssignment(utc(2026, 3, 1), STARTER_V1)])
    assert [ln.amount for ln in lines_of(doc, "flat_fee")] == [eur("50.00")]
    assert doc.plan == "pro"


FREE = Plan("free", 1, "EUR", {"api.calls": MeterPrice(PerUnit(D("0.002")))})
GROWTH = Plan("growth", 1, "EUR", {"api.calls": MeterPrice(PerUnit(D("0.001")))},
              minimum_spend=D(60))


def test_minimum_spend_is_prorated_by_the_final_plan_share() -> None:
    doc = compose([PlanAssignment(utc(2026, 9, 1), FREE),
                   PlanAssignment(utc(2026, 11, 16), GROWTH)], {"api.calls": D(12000)})
    # usage at growth: 12000 x 0.001 = 12.00 ; minimum 60 x 15/30 = 30.00 -> top-up 18.00
    assert lines_of(doc, "minimum") == [InvoiceLine(
        "minimum", "Minimum spend top-up (30.00 EUR)", NOV, eur("18.00"))]
    assert doc.subtotal == eur("30.00")


def test_minimum_spend_reached_adds_no_top_up() -> None:
    doc = compose([PlanAssignment(utc(2026, 9, 1), FREE),
                   PlanAssignment(utc(2026, 11, 16), GROWTH)], {"api.calls": D(40000)})
    # 40000 x 0.001 = 40.00 > 30.00 prorated minimum
    assert lines_of(doc, "minimum") == []
    assert doc.subtotal == eur("40.00")


def test_final_plan_in_another_currency_is_refused() -> None:
    usd = Plan("pro-us", 1, "USD", {}, flat_fee=D(50))
    with pytest.raises(ValueError, match="pro-us bills in USD, tenant in EUR"):
        compose_invoice(party(), SELLER, NOV, [PlanAssignment(utc(2026, 1, 1), usd)], {},
                        ISSUED)


def test_earlier_plan_in_another_currency_is_refused() -> None:
    usd = Plan("starter-us", 1, "USD", {}, flat_fee=D(20))
    with pytest.raises(ValueError, match="USD"):
        compose_invoice(party(), SELLER, NOV, [PlanAssignment(utc(2026, 10, 1), usd),
                                               PlanAssignment(utc(2026, 11, 16), PRO_V2)],
                        {}, ISSUED)


# ---- credits -----------------------------------------------------------------------------

FLAT_100 = Plan("flat", 1, "EUR", {}, flat_fee=D(100))
FLAT_FROM_JAN = [PlanAssignment(utc(2026, 1, 1), FLAT_100)]


def test_grants_apply_oldest_first_partially_after_earlier_spending() -> None:
    g1 = Credit("g1", "grant", "Welcome credit", eur("50"), utc(2026, 9, 1))
    g2 = Credit("g2", "grant", "Prepaid pack", eur("100"), utc(2026, 10, 1))
    g3 = Credit("g3", "grant", "Later pack", eur("25"), utc(2026, 11, 1))
    doc = compose(FLAT_FROM_JAN, credits=[g3, g2, g1], spent={"g1": D(10)})
    # total 100.00; g1 has 50 - 10 = 40 left -> takes 40 ; g2 takes the other 60, keeps 40 ;
    # g3 is not needed (not listed) but still counts in the balance: 40 + 25 = 65
    assert doc.credits == (
        CreditApplication("g1", "grant", "Welcome credit", eur("40.00"), eur("0.00")),
        CreditApplication("g2", "grant", "Prepaid pack", eur("60.00"), eur("40.00")),
    )
    assert doc.total == eur("100.00")
    assert doc.credits_applied == eur("100.00")
    assert doc.amount_due == eur("0.00")
    assert doc.credit_balance == eur("65.00")


def test_expired_other_currency_and_used_up_credits_are_skipped() -> None:
    credits = [
        Credit("old", "grant", "Expired promo", eur("500"), utc(2026, 6, 1),
               expires_at=ISSUED),  # expires exactly when the invoice is issued
        Credit("usd", "grant", "Dollar grant", Money(D(500), "USD"), utc(2026, 5, 1)),
        Credit("used", "grant", "Used up", eur("20"), utc(2026, 4, 1)),
        Credit("ok", "grant", "Promo", eur("30"), utc(2026, 7, 1),
               expires_at=ISSUED + timedelta(seconds=1)),
    ]
    doc = compose(FLAT_FROM_JAN, credits=credits, spent={"used": D(20)})
    # only "ok" is usable: 100.00 - 30.00 = 70.00 due, nothing left over
    assert doc.credits == (CreditApplication("ok", "grant", "Promo", eur("30.00"),
                                             eur("0.00")),)
    assert doc.credits_applied == eur("30.00")
    assert doc.amount_due == eur("70.00")
    assert doc.credit_balance == eur("0.00")


def test_credit_note_and_grant_apply_by_age_not_by_kind() -> None:
    note = Credit("cn1", "credit_note", "Outage 2026-10", eur("15"), utc(2026, 11, 20))
    grant = Credit("g1", "grant", "Welcome credit", eur("25"), utc(2026, 10, 1))
    doc = compose(FLAT_FROM_JAN, credits=[note, grant])
    # grant (older) 25, then the note 15: 100 - 40 = 60 due
    assert doc.credits == (
        CreditApplication("g1", "grant", "Welcome credit", eur("25.00"), eur("0.00")),
        CreditApplication("cn1", "credit_note", "Outage 2026-10", eur("15.00"), eur("0.00")),
    )
    assert doc.amount_due == eur("60.00")
    assert doc.credit_balance == eur("0.00")


def test_credits_apply_after_tax_and_due_never_goes_negative() -> None:
    grant = Credit("g1", "grant", "Prepaid", eur("200"), utc(2026, 10, 1))
    doc = compose(FLAT_FROM_JAN, credits=[grant], tax_rate="19")
    # 100.00 + 19 % tax 19.00 = 119.00 covered by the grant; 200 - 119 = 81 left
    assert doc.total == eur("119.00")
    assert doc.credits == (CreditApplication("g1", "grant", "Prepaid", eur("119.00"),
                                             eur("81.00")),)
    assert doc.credits_applied == eur("119.00")
    assert doc.amount_due == eur("0.00")
    assert doc.credit_balance == eur("81.00")


# ---- late usage ----------------------------------------------------------------------------

PRO_V1_GRADUATED = Plan("pro", 1, "EUR", {
    "api.calls": MeterPrice(Graduated((Tier(D(1000), D("0.01")), Tier(None, D("0.005"))))),
    "events": MeterPrice(PerUnit(D("0.01"))),
    "search": MeterPrice(PerUnit(D("0.10"))),
})
PRO_V2_FLAT_RATE = Plan("pro", 2, "EUR", {"api.calls": MeterPrice(PerUnit(D("0.02")))})


V1_SINCE_JANUARY = [PlanAssignment(utc(2026, 1, 1), PRO_V1_GRADUATED)]


def late(period: str, billed: Mapping[str, Decimal], counted: Mapping[str, Decimal],
         billed_amount: str, assignments: Sequence[PlanAssignment] = V1_SINCE_JANUARY
         ) -> LateUsage:
    return LateUsage(period, assignments, billed, counted, D(billed_amount))


def test_late_usage_is_repriced_under_the_earlier_plan_across_a_tier_boundary() -> None:
    # October under v1 was billed for 800 api.calls (8.00), 50 events (0.50), 5 search (0.50)
    october = late("2026-10", {"api.calls": D(800), "events": D(50), "search": D(5)},
                   {"api.calls": D(1500), "events": D(40), "search": D(5)}, "9.00")
    doc = compose([PlanAssignment(utc(2026, 11, 1), PRO_V2_FLAT_RATE)],
                  {"api.calls": D(300)}, late=[october])
    # current usage under v2: 300 x 0.02 = 6.00
    assert [ln.amount for ln in lines_of(doc, "usage")] == [eur("6.00")]
    # October again under v1: 1500 -> 1000 x 0.01 + 500 x 0.005 = 12.50, events stay at the
    # 50 billed (0.50), search 0.50: 13.50 - 9.00 billed = 4.50 (not 700 x 0.01 = 7.00)
    assert lines_of(doc, "adjustment") == [InvoiceLine(
        "adjustment", "Late usage for 2026-10: api.calls +700", "2026-10", eur("4.50"),
        "api.calls", D(700))]
    assert doc.subtotal == eur("10.50")  # 6.00 + 4.50
    assert doc.billed_usage == {
        NOV: {"api.calls": D(300)},
        "2026-10": {"api.calls": D(1500), "events": D(50), "search": D(5)},
    }


def test_late_usage_not_above_billed_adds_no_line_but_is_recorded() -> None:
    october = late("2026-10", {"api.calls": D(800)}, {"api.calls": D(800)}, "8.00")
    doc = compose([PlanAssignment(utc(2026, 11, 1), PRO_V2_FLAT_RATE)],
                  {"api.calls": D(300)}, late=[october])
    assert lines_of(doc, "adjustment") == []
    assert doc.subtotal == eur("6.00")
    assert doc.billed_usage == {NOV: {"api.calls": D(300)}, "2026-10": {"api.calls": D(800)}}


def test_late_usage_of_several_periods_in_period_order() -> None:
    october = late("2026-10", {"api.calls": D(800)}, {"api.calls": D(1500)}, "8.00")
    # search was never billed for September: 3 x 0.10 = 0.30
    september = late("2026-09", {}, {"search": D(3)}, "0")
    doc = compose([PlanAssignment(utc(2026, 11, 1), PRO_V2_FLAT_RATE)],
                  late=[october, september])
    assert [(ln.period, ln.meter, ln.quantity, ln.amount) for ln in lines_of(doc, "adjustment")
            ] == [("2026-09", "search", D(3), eur("0.30")),
                  ("2026-10", "api.calls", D(700), eur("4.50"))]
    assert doc.billed_usage["2026-09"] == {"search": D(3)}


MINIMUM_100 = Plan("min", 1, "EUR", {"api": MeterPrice(PerUnit(D("0.01")))},
                   minimum_spend=D(100))


def test_late_usage_under_a_minimum_already_topped_up_is_not_charged_again() -> None:
    # October: 6,000 calls counted at the close = 60.00 + a 40.00 top-up = 100.00 billed.
    # 10,000 calls in all cost 100.00 with no top-up: nothing more is owed (not 40.00 more).
    since = [PlanAssignment(utc(2026, 1, 1), MINIMUM_100)]
    october = late("2026-10", {"api": D(6000)}, {"api": D(10000)}, "100.00", since)
    doc = compose(since, {"api": D(20000)}, late=[october])
    assert lines_of(doc, "adjustment") == []
    assert doc.subtotal == eur("200.00")  # November's own 20,000 x 0.01
    # 12,000 in all: 120.00 - 100.00 = 20.00 more
    october = late("2026-10", {"api": D(6000)}, {"api": D(12000)}, "100.00", since)
    (adjustment,) = lines_of(compose(since, {"api": D(20000)}, late=[october]), "adjustment")
    assert adjustment.amount == eur("20.00")


VOLUME = Plan("vol", 1, "EUR", {"api": MeterPrice(Volume(
    (Tier(D(1000), D("0.01")), Tier(None, D("0.005")))))})


def test_late_usage_that_makes_a_volume_price_cheaper_is_not_a_negative_line() -> None:
    # October: 1,000 units billed at 0.01 = 10.00; 1,500 counted cost 1,500 x 0.005 = 7.50.
    since = [PlanAssignment(utc(2026, 1, 1), VOLUME)]
    october = late("2026-10", {"api": D(1000)}, {"api": D(1500)}, "10.00", since)
    doc = compose(since, late=[october],
                  credits=[Credit("g1", "grant", "grant", eur("5.00"), utc(2026, 9, 1))])
    assert lines_of(doc, "adjustment") == []
    assert doc.total == eur("0.00")
    assert doc.amount_due == eur("0.00")
    assert doc.credit_balance == eur("5.00")  # never more than was granted


def test_a_voided_invoice_counts_as_not_billed() -> None:
    # October's invoice (8.00 for 800 calls) was voided: billed 0, the period is owed in full.
    october = late("2026-10", {}, {"api.calls": D(800)}, "0")
    (adjustment,) = lines_of(compose([PlanAssignment(utc(2026, 11, 1), PRO_V2_FLAT_RATE)],
                                     late=[october]), "adjustment")
    assert adjustment.amount == eur("8.00")


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([PRO_V1_GRADUATED, MINIMUM_100, VOLUME,
                        replace(PRO_V1_GRADUATED, flat_fee=D("49.99"), minimum_spend=D(25))]),
       st.integers(0, 30_000), st.integers(0, 30_000), st.integers(0, 100), st.integers(0, 9))
def test_usage_split_between_the_close_and_late_bills_what_the_whole_usage_costs(
        plan: Plan, at_close: int, afterwards: int, searches: int, started: int) -> None:
    """For random usage split into "counted at close" and "late", October's close plus
    November's adjustment bill what October's whole usage costs, or what the close billed
    if that was more (a volume tier can make more usage cheaper)."""
    since = [PlanAssignment(utc(2026, 10, 1 + started, 7), plan)]
    meters = sorted(plan.prices)
    partial = {m: D(at_close) for m in meters}
    whole = {m: D(at_close + afterwards) for m in meters}
    if "search" in plan.prices:
        partial["search"] = whole["search"] = D(searches)
    october = compose_invoice(party(), SELLER, "2026-10", since, partial, ISSUED)
    assert october is not None
    everything = compose_invoice(party(), SELLER, "2026-10", since, whole, ISSUED)
    assert everything is not None
    billed = replace(october, status="finalized")
    november = compose(since, late=[LateUsage(
        "2026-10", since, billed_so_far([billed], "2026-10"), whole,
        billed_amount([billed], "2026-10"))])
    extra = sum((ln.amount.amount for ln in lines_of(november, "adjustment")), D(0))
    assert october.subtotal.amount + extra == max(everything.subtotal.amount,
                                                  october.subtotal.amount)
    assert extra >= 0


# ---- what earlier invoices billed and spent ------------------------------------------------


def document(status: InvoiceStatus, period: str,
             billed: Mapping[str, Mapping[str, Decimal]],
             credits: tuple[CreditApplication, ...] = ()) -> InvoiceDocument:
    zero = eur("0")
    return InvoiceDocument(
        id=invoice_id("acme", period), tenant_id="acme", period=period,
        period_start=utc(2026, 1, 1), period_end=utc(2026, 2, 1), currency="EUR",
        seller=SELLER, buyer=BUYER, plan="pro", plan_version=1, lines=(), subtotal=zero,
        tax_rate=None, tax=zero, total=zero, credits=credits, credits_applied=zero,
        amount_due=zero, credit_balance=zero, issued_at=ISSUED, due_at=ISSUED,
        billed_usage=billed, status=status)


def applied(credit_id: str, amount: str) -> CreditApplication:
    return CreditApplication(credit_id, "grant", credit_id, eur(amount), eur("0"))


def test_billed_so_far_counts_finalized_invoices_and_takes_the_max() -> None:
    docs = [
        document("finalized", "2026-10", {"2026-10": {"api": D(800), "ev": D(50)}}),
        document("void", "2026-10", {"2026-10": {"api": D(1200)}}),
        document("draft", "2026-11", {"2026-10": {"api": D(5000), "x": D(9)}}),
        document("finalized", "2026-11", {"2026-11": {"api": D(1)},
                                          "2026-10": {"api": D(1000), "ev": D(40)}}),
    ]
    # api: max(800, 1000) = 1000 (the void one billed nothing) ; ev: max(50, 40) = 50 ;
    # the draft is not counted
    assert billed_so_far(docs, "2026-10") == {"api": D(1000), "ev": D(50)}
    assert billed_so_far(docs, "2026-11") == {"api": D(1)}
    assert billed_so_far(docs, "2026-09") == {}


def test_credit_spent_counts_finalized_invoices_only() -> None:
    docs = [
        document("finalized", "2026-09", {}, (applied("g1", "10"), applied("g2", "5"))),
        document("finalized", "2026-10", {}, (applied("g1", "7.25"),)),
        document("void", "2026-08", {}, (applied("g1", "100"),)),
        document("draft", "2026-11", {}, (applied("g2", "50"), applied("g3", "1"))),
    ]
    # g1: 10 + 7.25 (the void 100 is given back) ; g2: 5 (the draft's 50 is not spent yet)
    assert credit_spent(docs) == {"g1": D("17.25"), "g2": D(5)}


# ---- ids, numbers and the close schedule -----------------------------------------------------


def test_invoice_id_is_deterministic_and_distinct_per_tenant_and_period() -> None:
    first = invoice_id("acme", NOV)
    assert first == invoice_id("acme", NOV)
    assert re.fullmatch(r"inv_202611_[0-9a-f]{20}", first)
    assert invoice_id("globex", NOV) != first
    assert invoice_id("acme", "2026-10") != first
    assert invoice_id("acme", "2026-10").startswith("inv_202610_")


def test_format_number() -> None:
    assert format_number("MTR", 2026, 123) == "MTR-2026-000123"
    assert format_number("MTR", 2026, 1) == "MTR-2026-000001"
    assert format_number("INV", 2027, 1234567) == "INV-2027-1234567"


@pytest.mark.parametrize(("now", "period"), [
    (utc(2026, 12, 1, 0, 59), "2026-10"),  # 00:59 - 1 h = Nov 30 23:59: November in grace
    (utc(2026, 12, 1, 1, 0), "2026-11"),  # 01:00 - 1 h = Dec 1 00:00: November is due
    (utc(2026, 12, 31, 23, 59), "2026-11"),
    (utc(2027, 1, 1, 1, 0), "2026-12"),  # across the year
])
def test_due_period(now: datetime, period: str) -> None:
    assert due_period(now, timedelta(hours=1)) == period


@pytest.mark.parametrize(("now", "period"), [
    (utc(2026, 12, 1, 1, 0, 14), "2026-10"),  # in the 15 s the close settles for
    (utc(2026, 12, 1, 1, 0, 15), "2026-11"),
])
def test_a_period_is_due_once_the_gateways_delivery_timeout_has_passed_too(
        now: datetime, period: str) -> None:
    assert due_period(now, timedelta(hours=1), timedelta(seconds=15)) == period


def test_complete_through_is_the_barrier_capped_at_the_period_end() -> None:
    end = utc(2026, 12, 1)
    assert counted_through(end, None) is None
    assert counted_through(end, utc(2026, 11, 20, 8)) == utc(2026, 11, 20, 8)
    assert counted_through(end, utc(2026, 12, 1, 1, 0, 20)) == end


def subscription(tenant_id: str, *starts: str) -> Subscription:
    return Subscription(tenant_id, tuple(Assignment("pro", 1, s) for s in starts),
                        "2026-01-01T00:00:00.000Z")


def test_scheduled_commands_cover_tenants_with_a_plan_before_period_end() -> None:
    directory = Directory()
    for record in (
        subscription("t-c", "2026-12-01T00:00:00.000Z"),  # starts at the end: out
        subscription("t-a", "2026-10-05T00:00:00.000Z"),
        subscription("t-e", "2026-11-30T23:59:59.999Z", "2027-01-01T00:00:00Z"),
        subscription("t-d", "2027-01-01T00:00:00.000Z"),  # out
        subscription("t-b", "2025-01-01T00:00:00Z"),
    ):
        directory.apply(record)
    assert scheduled_commands(directory, NOV) == [
        CloseCommand("t-a", NOV, "schedule"),
        CloseCommand("t-b", NOV, "schedule"),
        CloseCommand("t-e", NOV, "schedule"),
    ]


def test_periods_to_sweep_goes_back_to_the_last_swept_period() -> None:
    swept = {"2026-08", "2026-09"}
    assert periods_to_sweep("2026-11", swept.__contains__, "2026-01") == ["2026-10", "2026-11"]
    assert periods_to_sweep("2026-09", swept.__contains__, "2026-01") == []
    # Never before the first period any tenant had a plan in; nothing without any plan.
    assert periods_to_sweep("2027-01", set().__contains__, "2026-11") == [
        "2026-11", "2026-12", "2027-01"]
    assert periods_to_sweep("2026-10", set().__contains__, "2026-11") == []
    assert periods_to_sweep("2026-10", set().__contains__, None) == []


def test_first_period_and_unfinished_closes() -> None:
    subscriptions = {"a": subscription("a", "2026-10-05T00:00:00.000Z"),
                     "b": subscription("b", "2026-12-01T00:00:00.000Z", "2026-08-31T23:00:00Z")}
    assert first_period(subscriptions) == "2026-08"
    assert first_period({}) is None
    finalized = replace(document("finalized", NOV, {}), pdf_sha256="ab" * 32)
    no_pdf = document("finalized", NOV, {})
    draft = document("draft", NOV, {})
    assert unfinished(["t1", "t2", "t3", "t4"], [finalized, no_pdf, draft, None]) == (
        ["t3", "t4"], ["t2"])

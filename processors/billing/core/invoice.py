"""Invoice composition: one tenant's period, its plans, usage and credits in; a document out.

Pure code, no I/O. The rules an invoice follows (docs/billing.md says the same to users):

- Usage of the period is priced at the plan in force when the period ends (Stripe Billing
  does the same for metered prices). A plan change inside a period prorates the flat fee:
  each plan's fee is charged for the share of the period it was in force, to the second.
  The minimum spend of the final plan is prorated the same way.
- Usage counted after its period was invoiced ("late usage") is billed on the next invoice
  as one adjustment line per period: the whole period is priced again with what is counted
  now (usage, tiers, prorated flat fees, the minimum spend) under the plans that were in
  force in it, and what invoices that are not void already charged for it is taken off. A
  difference of zero or less adds no line: late usage never lowers what a period cost (a
  volume tier that makes more usage cheaper is not refunded; issue a credit note). So the
  sum billed for a period is what its whole usage costs, or what was billed if that was
  more; a void invoice counts as not billed.
- Each line is rounded once, half-up, to the currency's minor unit; subtotal = sum of lines;
  tax = subtotal x the tenant's rate, rounded half-up; total = subtotal + tax.
- Credits (prepaid grants and credit notes) are applied after tax, oldest first, skipping
  expired ones and other currencies; amount due = total - credits applied, never below 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from processors.billing.core.money import Money, exactly, round_to_minor
from processors.billing.core.pricing import Plan, TierCharge, price_usage
from processors.usage.core.periods import period_bounds

ZERO = Decimal(0)
InvoiceStatus = Literal["draft", "finalized", "void"]
LineKind = Literal["usage", "flat_fee", "minimum", "adjustment"]


def invoice_id(tenant_id: str, period: str) -> str:
    """The one id a tenant's invoice for ``period`` can have: closing twice finds it again."""
    digest = hashlib.blake2b(f"{tenant_id}\x00{period}".encode(), digest_size=10).hexdigest()
    return f"inv_{period.replace('-', '')}_{digest}"


@dataclass(frozen=True)
class Party:
    """Seller or buyer block of an invoice."""

    name: str
    address: tuple[str, ...] = ()
    email: str | None = None
    tax_id: str | None = None


@dataclass(frozen=True)
class InvoiceLine:
    kind: LineKind
    description: str
    #: The period the line bills (an adjustment names an earlier period).
    period: str
    amount: Money
    meter: str | None = None
    quantity: Decimal | None = None
    #: Units taken off before pricing (included in the plan).
    included: Decimal = ZERO
    #: Tier breakdown of a usage line.
    tiers: tuple[TierCharge, ...] = ()


@dataclass(frozen=True)
class CreditApplication:
    credit_id: str
    kind: Literal["grant", "credit_note"]
    description: str
    amount: Money
    #: What is left of the credit after this invoice.
    remaining: Money


@dataclass(frozen=True)
class OpenGap:
    """A producer whose sequence numbers had gaps when the invoice was closed."""

    source: str
    #: Sequence numbers that never arrived, over every range.
    missing: int
    #: The first missing ranges (inclusive), at most ``GAPS_SHOWN``.
    ranges: tuple[tuple[int, int], ...]
    #: How many ranges there are in all.
    range_count: int


#: Missing ranges an invoice lists per source (the API lists them all).
GAPS_SHOWN = 10


@dataclass(frozen=True)
class InvoiceDocument:
    id: str
    tenant_id: str
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    seller: Party
    buyer: Party
    plan: str
    plan_version: int
    lines: tuple[InvoiceLine, ...]
    subtotal: Money
    #: Percent, e.g. Decimal("19") for 19 %; None when no tax is configured.
    tax_rate: Decimal | None
    tax: Money
    total: Money
    credits: tuple[CreditApplication, ...]
    credits_applied: Money
    amount_due: Money
    #: Credit left for later invoices (unexpired, same currency), after this one.
    credit_balance: Money
    issued_at: datetime
    due_at: datetime
    #: Quantities billed so far for each period this invoice touches: {period: {meter: qty}}.
    billed_usage: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    status: InvoiceStatus = "draft"
    number: str | None = None
    finalized_at: datetime | None = None
    voided_at: datetime | None = None
    pdf_key: str | None = None
    pdf_sha256: str | None = None
    #: Every event accepted before this instant is counted on this invoice (the close
    #: barrier's proof, capped at the period's end); None on invoices closed before it.
    complete_through: datetime | None = None
    #: Producers with missing sequence numbers at close (``METERLY_CLOSE_WITH_GAPS=list``).
    open_gaps: tuple[OpenGap, ...] = ()


# ---- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanAssignment:
    effective_from: datetime
    plan: Plan


@dataclass(frozen=True)
class Credit:
    id: str
    kind: Literal["grant", "credit_note"]
    description: str
    amount: Money
    created_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class LateUsage:
    """An earlier, already invoiced period, checked again at this close."""

    period: str
    #: The plan assignments in force during that period (its invoice's plans).
    assignments: Sequence[PlanAssignment]
    #: Quantities billed for it so far, and counted now, per meter.
    billed: Mapping[str, Decimal]
    counted: Mapping[str, Decimal]
    #: What invoices that are not void charged for it so far, before tax.
    billed_amount: Decimal


@dataclass(frozen=True)
class BillingParty:
    """The tenant as billing needs it."""

    id: str
    currency: str
    buyer: Party
    tax_rate: Decimal | None = None
    payment_terms_days: int = 30


# ---- composition ----------------------------------------------------------------------


def plans_in_force(assignments: Sequence[PlanAssignment], start: datetime,
                   end: datetime) -> list[tuple[datetime, datetime, Plan]]:
    """The plans in force during [start, end) as (from, until, plan) segments, in order."""
    ordered = sorted(assignments, key=lambda a: a.effective_from)
    segments: list[tuple[datetime, datetime, Plan]] = []
    for index, assignment in enumerate(ordered):
        until = ordered[index + 1].effective_from if index + 1 < len(ordered) else end
        seg_from, seg_until = max(assignment.effective_from, start), min(until, end)
        if seg_from < seg_until:
            segments.append((seg_from, seg_until, assignment.plan))
    return segments


def prorated(amount: Decimal, part: timedelta, whole: timedelta) -> Fraction:
    """``amount`` for the whole seconds of ``part`` out of ``whole``, as an exact fraction
    (multiplied before dividing, rounded by the caller once)."""
    second = timedelta(seconds=1)
    return Fraction(amount) * Fraction(part // second, whole // second)


def credit_balances(credits: Sequence[Credit], spent: Mapping[str, Decimal],
                    at: datetime, currency: str) -> list[tuple[Credit, Decimal]]:
    """Usable credits at ``at`` with what is left of each, oldest first."""
    usable = []
    for credit in sorted(credits, key=lambda c: (c.created_at, c.id)):
        if credit.amount.currency != currency:
            continue
        if credit.expires_at is not None and credit.expires_at <= at:
            continue
        left = credit.amount.amount - spent.get(credit.id, ZERO)
        if left > ZERO:
            usable.append((credit, left))
    return usable


def _period_lines(period: str, assignments: Sequence[PlanAssignment],
                  usage: Mapping[str, Decimal], currency: str) -> list[InvoiceLine] | None:
    """A period's own lines: usage under the plan in force at its end, each plan's flat fee
    for the share of the period it was in force, the final plan's prorated minimum top-up.
    None when no plan was in force in the period."""
    start, end = period_bounds(period)
    segments = plans_in_force(assignments, start, end)
    if not segments:
        return None
    final_from, final_until, final = segments[-1]
    whole = end - start
    metered = price_usage(replace(final, flat_fee=ZERO, minimum_spend=ZERO), usage)
    lines: list[InvoiceLine] = [
        InvoiceLine("usage", f"{c.meter}", period, c.amount, c.meter, c.quantity, c.included,
                    c.tiers)
        for c in metered.lines
    ]
    for seg_from, seg_until, plan in segments:
        if plan.flat_fee == ZERO:
            continue
        amount = Money(round_to_minor(prorated(plan.flat_fee, seg_until - seg_from, whole),
                                      currency), currency)
        text = f"{plan.name} v{plan.version} base fee"
        if seg_until - seg_from != whole:
            last_day = seg_until - timedelta(microseconds=1)
            text += f" ({seg_from:%Y-%m-%d} to {last_day:%Y-%m-%d}, prorated)"
        lines.append(InvoiceLine("flat_fee", text, period, amount))
    priced = sum((line.amount.amount for line in lines), ZERO)
    minimum = round_to_minor(prorated(final.minimum_spend, final_until - final_from, whole),
                             currency)
    if minimum > priced:
        lines.append(InvoiceLine("minimum", f"Minimum spend top-up ({minimum:,} {currency})",
                                 period, Money(minimum - priced, currency)))
    return lines


@exactly
def period_charge(period: str, assignments: Sequence[PlanAssignment],
                  usage: Mapping[str, Decimal], currency: str) -> Decimal:
    """What a period's own lines come to (before tax) for ``usage``; 0 with no plan."""
    lines = _period_lines(period, assignments, usage, currency)
    return sum((line.amount.amount for line in lines or ()), ZERO)


def _late_line(earlier: LateUsage, currency: str
               ) -> tuple[InvoiceLine | None, dict[str, Decimal]]:
    """The adjustment for an earlier period (None when it owes nothing more), and the
    quantities now covered for it. Usage once billed stays billed: each meter is priced at
    the larger of what was billed and what is counted."""
    covered = dict(earlier.billed)
    for meter, quantity in earlier.counted.items():
        covered[meter] = max(quantity, covered.get(meter, ZERO))
    repriced = _period_lines(earlier.period, earlier.assignments, covered, currency)
    if repriced is None:
        return None, dict(earlier.billed)
    owed = sum((line.amount.amount for line in repriced), ZERO) - earlier.billed_amount
    if owed <= ZERO:
        return None, covered
    grown = {m: q - earlier.billed.get(m, ZERO) for m, q in sorted(covered.items())
             if q > earlier.billed.get(m, ZERO)}
    what = ", ".join(f"{m} +{q:,}" for m, q in grown.items())
    single = next(iter(grown.items())) if len(grown) == 1 else (None, None)
    text = f"Late usage for {earlier.period}" + (f": {what}" if what else "")
    return InvoiceLine("adjustment", text, earlier.period, Money(owed, currency),
                       single[0], single[1]), covered


@exactly
def compose_invoice(
    party: BillingParty,
    seller: Party,
    period: str,
    assignments: Sequence[PlanAssignment],
    usage: Mapping[str, Decimal],
    issued_at: datetime,
    late: Sequence[LateUsage] = (),
    credits: Sequence[Credit] = (),
    credit_spent: Mapping[str, Decimal] | None = None,
) -> InvoiceDocument | None:
    """The draft invoice of ``party`` for ``period``; None when no plan was in force in it."""
    currency = party.currency
    for plan in [a.plan for a in assignments] + [a.plan for x in late for a in x.assignments]:
        if plan.currency != currency:
            raise ValueError(f"plan {plan.name} bills in {plan.currency}, tenant in {currency}")
    period_lines = _period_lines(period, assignments, usage, currency)
    if period_lines is None:
        return None
    start, end = period_bounds(period)
    final = plans_in_force(assignments, start, end)[-1][2]
    lines = list(period_lines)
    billed: dict[str, dict[str, Decimal]] = {period: dict(usage)}
    for earlier in sorted(late, key=lambda x: x.period):
        adjustment, covered = _late_line(earlier, currency)
        if adjustment is not None:
            lines.append(adjustment)
        billed[earlier.period] = covered

    subtotal = sum((line.amount.amount for line in lines), ZERO)
    tax = ZERO if party.tax_rate is None else round_to_minor(
        Fraction(subtotal) * Fraction(party.tax_rate) / 100, currency)
    total = subtotal + tax

    applications: list[CreditApplication] = []
    outstanding = total
    balance = ZERO
    for credit, left in credit_balances(credits, credit_spent or {}, issued_at, currency):
        take = min(left, outstanding)
        outstanding -= take
        balance += left - take
        if take > ZERO:
            applications.append(CreditApplication(
                credit.id, credit.kind, credit.description, Money(take, currency),
                Money(left - take, currency)))
    applied = total - outstanding

    return InvoiceDocument(
        id=invoice_id(party.id, period), tenant_id=party.id, period=period,
        period_start=start, period_end=end, currency=currency, seller=seller,
        buyer=party.buyer, plan=final.name, plan_version=final.version, lines=tuple(lines),
        subtotal=Money(subtotal, currency), tax_rate=party.tax_rate, tax=Money(tax, currency),
        total=Money(total, currency), credits=tuple(applications),
        credits_applied=Money(applied, currency), amount_due=Money(outstanding, currency),
        credit_balance=Money(balance, currency), issued_at=issued_at,
        due_at=issued_at + timedelta(days=party.payment_terms_days), billed_usage=billed,
    )


@exactly
def credit_spent(documents: Sequence[InvoiceDocument]) -> dict[str, Decimal]:
    """Credit used by finalized invoices (a voided invoice gives its credit back)."""
    spent: dict[str, Decimal] = {}
    for doc in documents:
        if doc.status != "finalized":
            continue
        for application in doc.credits:
            spent[application.credit_id] = (spent.get(application.credit_id, ZERO)
                                            + application.amount.amount)
    return spent


def billed_so_far(documents: Sequence[InvoiceDocument], period: str) -> dict[str, Decimal]:
    """The quantities finalized invoices billed for ``period``, per meter (a void invoice
    billed nothing: voiding puts its usage up for billing again)."""
    billed: dict[str, Decimal] = {}
    for doc in documents:
        if doc.status != "finalized":
            continue
        for meter, quantity in doc.billed_usage.get(period, {}).items():
            billed[meter] = max(billed.get(meter, ZERO), quantity)
    return billed


@exactly
def billed_amount(documents: Sequence[InvoiceDocument], period: str) -> Decimal:
    """What finalized invoices charged for ``period`` before tax: its own invoice's lines and
    the adjustments for it on later invoices."""
    return sum((line.amount.amount for doc in documents if doc.status == "finalized"
                for line in doc.lines if line.period == period), ZERO)


def format_number(prefix: str, year: int, sequence: int) -> str:
    """Invoice numbers as people read them: MTR-2026-000123."""
    return f"{prefix}-{year:04d}-{sequence:06d}"

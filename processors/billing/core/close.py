"""Period close rules as pure code: which period is due, which tenants its close covers, and
one tenant's draft composed from a snapshot of its records (values, not a live directory)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from processors.billing.core.admin_records import (
    assignments_of,
    billing_party,
    credit_of,
)
from processors.billing.core.invoice import (
    InvoiceDocument,
    LateUsage,
    Party,
    billed_amount,
    billed_so_far,
    compose_invoice,
    credit_spent,
)
from processors.billing.core.money import exactly
from processors.usage.core.periods import period_bounds, period_of, previous_period
from schemas.admin_v1 import CreditRecord, PlanVersion, Subscription, Tenant
from schemas.rfc3339 import parse_time

#: Earlier periods checked for late usage at each close. Usage older than the open periods
#: is refused at ingest, so late usage can only reach the last few invoiced periods.
LATE_LOOKBACK = 3


def due_period(now: datetime, grace: timedelta, settle: timedelta = timedelta(0)) -> str:
    """The latest period whose end plus grace plus ``settle`` has passed at ``now``.

    ``settle`` covers the gateways' delivery timeout and clock skew: an event accepted in
    the last instant of the grace may reach Kafka that much later, and the close barrier
    can only wait for what Kafka holds.
    """
    return previous_period(period_of(now - grace - settle))


def counted_through(period_end: datetime, proven: datetime | None) -> datetime | None:
    """An invoice's ``complete_through``: the instant before which the close barrier proved
    every accepted event counted, capped at the period's end (after it, the period's
    usage is complete)."""
    return None if proven is None else min(proven, period_end)


@dataclass(frozen=True)
class BillingSnapshot:
    """One tenant's records as the directory held them when the snapshot was taken."""

    tenant: Tenant
    subscription: Subscription | None
    #: Every plan version, by (name, version): the assignments' and earlier invoices'.
    plans: Mapping[tuple[str, int], PlanVersion]
    credits: Sequence[CreditRecord]


def periods_to_sweep(due: str, swept: Callable[[str], bool], first: str | None) -> list[str]:
    """The due periods a sweep still has to close, oldest first: ``due`` and every period
    before it back to the latest one already ``swept`` (or to ``first``, the earliest
    period any tenant had a plan in), so an outage across whole periods bills them all."""
    if first is None:
        return []
    missing: list[str] = []
    period = due
    while period >= first and not swept(period):
        missing.append(period)
        period = previous_period(period)
    return missing[::-1]


def first_period(subscriptions: Mapping[str, Subscription]) -> str | None:
    """The earliest period any tenant had a plan in."""
    starts = [parse_time(a.effective_from) for s in subscriptions.values() for a in s.assignments]
    return period_of(min(starts)) if starts else None


def unfinished(tenants: Sequence[str], invoices: Sequence[InvoiceDocument | None]
               ) -> tuple[list[str], list[str]]:
    """Of the tenants a period's close covers (and their invoices for it, in order): those
    without a finalized invoice, and those whose finalized invoice has no PDF yet."""
    unclosed = [t for t, doc in zip(tenants, invoices, strict=True)
                if doc is None or doc.status == "draft"]
    unrendered = [t for t, doc in zip(tenants, invoices, strict=True)
                  if doc is not None and doc.status != "draft" and doc.pdf_sha256 is None]
    return unclosed, unrendered


def tenants_to_close(subscriptions: Mapping[str, Subscription], period: str) -> list[str]:
    """The tenants with a plan assignment that started before ``period`` ended, by id: the
    ones a scheduled close (and an operator's close of every tenant) invoices."""
    _start, end = period_bounds(period)
    return sorted(tenant_id for tenant_id, subscription in subscriptions.items()
                  if any(parse_time(a.effective_from) < end for a in subscription.assignments))


def compose_draft(snapshot: BillingSnapshot | None, seller: Party, payment_terms_days: int,
                  period: str, history: Sequence[InvoiceDocument],
                  usage: Mapping[str, Mapping[str, Decimal]], now: datetime
                  ) -> InvoiceDocument | str:
    """The draft of ``period`` for the tenant of ``snapshot``, or why there is none.

    ``history`` holds the tenant's invoices; ``usage`` the counters of the period and of
    the invoiced periods named by ``late_periods``.
    """
    if snapshot is None:
        return "unknown tenant"
    try:
        return _compose(snapshot, seller, payment_terms_days, period, history, usage, now)
    except (ValueError, ArithmeticError) as exc:
        # A record this billing cannot price (a plan stored before the API bounded its
        # amounts, say) holds back this tenant's invoice, not every tenant's.
        return f"cannot be priced: {exc}"


@exactly
def _compose(snapshot: BillingSnapshot, seller: Party, payment_terms_days: int, period: str,
             history: Sequence[InvoiceDocument], usage: Mapping[str, Mapping[str, Decimal]],
             now: datetime) -> InvoiceDocument | str:
    tenant, plans = snapshot.tenant, snapshot.plans
    assignments = assignments_of(snapshot.subscription, plans)
    earlier = [d for d in history if d.period != period]
    # Periods whose invoice was finalized (or voided after): a period with only a draft is
    # still to be closed by itself.
    invoiced = {d.period for d in earlier if d.status != "draft"}
    late = [LateUsage(p, assignments, billed_so_far(earlier, p), usage[p],
                      billed_amount(earlier, p))
            for p in late_periods(history, period) if p in usage and p in invoiced]
    credits = [credit_of(c) for c in snapshot.credits]
    draft = compose_invoice(
        billing_party(tenant, payment_terms_days), seller, period, assignments,
        usage.get(period, {}), now, late, credits, credit_spent(earlier))
    return "no plan in force during the period" if draft is None else draft


def late_periods(history: Sequence[InvoiceDocument], period: str) -> list[str]:
    """The invoiced periods before ``period`` that late usage may still reach."""
    return sorted({d.period for d in history if d.period < period})[-LATE_LOOKBACK:]

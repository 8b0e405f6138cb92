"""Admin records (plans, assignments, credits, tenants) turned into what composition needs.

Pure functions over the records the admin topic holds; the gateway (hard limits, invoice
previews) and the billing agent (period close) read the same view, so both price alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from ops.settings import Settings
from processors.invoice import BillingParty, Credit, Party, PlanAssignment
from processors.money import Money
from processors.pricing import Plan
from schemas.admin_v1 import Assignment, CreditRecord, PlanVersion, Subscription, Tenant
from schemas.plans_v1 import PlanSpec, to_plan


def seller_of(settings: Settings) -> Party:
    """The issuer block from the deployment's settings (address lines split on "|")."""
    address = tuple(line.strip() for line in settings.issuer_address.split("|") if line.strip())
    return Party(settings.issuer_name, address, settings.issuer_email, settings.issuer_tax_id)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def plan_of(record: PlanVersion) -> Plan:
    return to_plan(PlanSpec.model_validate(record.spec), record.version)


def assignments_of(subscription: Subscription | None,
                   plans: Mapping[tuple[str, int], PlanVersion]) -> list[PlanAssignment]:
    if subscription is None:
        return []
    return [PlanAssignment(parse_time(a.effective_from), plan_of(plans[(a.plan, a.version)]))
            for a in subscription.assignments if (a.plan, a.version) in plans]


def assignment_at(subscription: Subscription | None, at: datetime) -> Assignment | None:
    """The assignment in force at ``at`` (the latest that started at or before it)."""
    if subscription is None:
        return None
    started = [a for a in subscription.assignments if parse_time(a.effective_from) <= at]
    return max(started, key=lambda a: parse_time(a.effective_from)) if started else None


def billing_party(tenant: Tenant, default_terms_days: int) -> BillingParty:
    return BillingParty(
        id=tenant.id, currency=tenant.currency,
        buyer=Party(tenant.name, tuple(tenant.billing_address), tenant.billing_email),
        tax_rate=None if tenant.tax_rate is None else Decimal(tenant.tax_rate),
        payment_terms_days=(tenant.payment_terms_days if tenant.payment_terms_days is not None
                            else default_terms_days),
    )


def credit_of(record: CreditRecord) -> Credit:
    return Credit(
        id=record.id, kind=record.credit_kind, description=record.description,
        amount=Money(Decimal(record.amount), record.currency),
        created_at=parse_time(record.created_at),
        expires_at=None if record.expires_at is None else parse_time(record.expires_at),
    )

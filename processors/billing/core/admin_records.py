"""Admin records (plans, assignments, credits, tenants) as the types composition works with.

Pure functions over the records the admin topic holds; the gateway (hard limits, invoice
previews) and the billing worker (period close) read the same records through these, so
both price alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from processors.billing.core.invoice import BillingParty, Credit, Party, PlanAssignment
from processors.billing.core.money import Money
from processors.billing.core.plans import to_plan
from processors.billing.core.pricing import Plan
from schemas.admin_v1 import CreditRecord, PlanVersion, Subscription, Tenant
from schemas.plans_v1 import PlanSpec
from schemas.rfc3339 import parse_time


def plan_of(record: PlanVersion) -> Plan:
    return to_plan(PlanSpec.model_validate(record.spec), record.version)


def assignments_of(subscription: Subscription | None,
                   plans: Mapping[tuple[str, int], PlanVersion]) -> list[PlanAssignment]:
    if subscription is None:
        return []
    return [PlanAssignment(parse_time(a.effective_from), plan_of(plans[(a.plan, a.version)]))
            for a in subscription.assignments if (a.plan, a.version) in plans]


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

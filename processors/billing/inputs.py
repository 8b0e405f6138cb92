"""What billing reads besides usage: one tenant's records from the directory (a snapshot,
so composition works on values while the directory keeps changing) and the seller block
from the deployment's settings."""

from __future__ import annotations

from processors.billing.core.close import BillingSnapshot
from processors.billing.core.invoice import Party
from processors.runtime.settings import Settings
from processors.tenants.core.directory import Directory


def seller_of(settings: Settings) -> Party:
    """The issuer block from the deployment's settings (address lines split on "|")."""
    address = tuple(line.strip() for line in settings.issuer_address.split("|") if line.strip())
    return Party(settings.issuer_name, address, settings.issuer_email, settings.issuer_tax_id)


def snapshot_of(directory: Directory, tenant_id: str) -> BillingSnapshot | None:
    """The tenant, its plan history, the plan versions and its credits; None if unknown."""
    tenant = directory.tenant(tenant_id)
    if tenant is None:
        return None
    return BillingSnapshot(tenant, directory.subscription(tenant_id), directory.plans(),
                           tuple(directory.credits_of(tenant_id)))

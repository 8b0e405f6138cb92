"""Invoices API (``gateway.services.invoices`` does the work).

A tenant asking for another tenant's invoice gets 404, never 403: invoices are looked up
inside the caller's partition, so there is nothing to leak. PDF downloads are expiring
links (signed by the gateway for the local store, presigned for S3).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from gateway.runtime import CurrentTenant, Operator, RuntimeDep, correlation_id
from gateway.services import invoices
from schemas.api_v1 import (
    BillingStatus,
    CloseAccepted,
    CloseRequest,
    InvoicePage,
    InvoicePublic,
)

router = APIRouter(tags=["invoices"])


# ---- tenant -------------------------------------------------------------------------------


@router.get("/v1/invoices/upcoming", response_model=InvoicePublic)
async def my_upcoming_invoice(tenant: CurrentTenant, runtime: RuntimeDep) -> InvoicePublic:
    """The current period's invoice so far (a preview: a draft, not stored, no number)."""
    return await invoices.upcoming(runtime, tenant.id)


@router.get("/v1/invoices", response_model=list[InvoicePublic])
async def my_invoices(tenant: CurrentTenant, runtime: RuntimeDep) -> list[InvoicePublic]:
    """The calling tenant's invoices, newest period first."""
    return await invoices.tenant_invoices(runtime, tenant.id)


@router.get("/v1/invoices/{inv_id}", response_model=InvoicePublic)
async def my_invoice(inv_id: str, tenant: CurrentTenant, runtime: RuntimeDep) -> InvoicePublic:
    return invoices.invoice_public(runtime,
                                   await invoices.invoice_or_404(runtime, tenant.id, inv_id))


@router.get("/v1/invoices/{inv_id}/pdf", response_class=RedirectResponse, status_code=307)
async def my_invoice_pdf(inv_id: str, tenant: CurrentTenant,
                         runtime: RuntimeDep) -> RedirectResponse:
    """Redirects to an expiring download link of the invoice's PDF."""
    return invoices.pdf_redirect(runtime,
                                 await invoices.invoice_or_404(runtime, tenant.id, inv_id))


# ---- operator -----------------------------------------------------------------------------


@router.post("/v1/admin/billing/close", status_code=202, response_model=CloseAccepted)
async def close_period(body: CloseRequest, request: Request, runtime: RuntimeDep,
                       _: Operator) -> CloseAccepted:
    """Close a period now for some or all tenants. Closing is idempotent: a tenant's invoice
    for a period has one id, and a finalized invoice is never changed."""
    return await invoices.close_period(runtime, body, correlation_id(request))


@router.get("/v1/admin/billing/status", response_model=BillingStatus)
async def billing_status(runtime: RuntimeDep, _: Operator) -> BillingStatus:
    """What the billing workers' close barriers know: the instant before which every
    accepted event is counted, and what a held close waits for."""
    return await invoices.billing_status(runtime)


@router.get("/v1/admin/invoices", response_model=InvoicePage)
async def all_invoices(
    runtime: RuntimeDep, _: Operator,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> InvoicePage:
    """Every tenant's invoices, a page at a time (storage order)."""
    return await invoices.all_invoices(runtime, limit, cursor)


@router.get("/v1/admin/tenants/{tenant_id}/invoices", response_model=list[InvoicePublic])
async def tenant_invoices(tenant_id: str, runtime: RuntimeDep,
                          _: Operator) -> list[InvoicePublic]:
    return await invoices.tenant_invoices(runtime, tenant_id)


@router.get("/v1/admin/tenants/{tenant_id}/invoices/upcoming", response_model=InvoicePublic)
async def tenant_upcoming_invoice(tenant_id: str, runtime: RuntimeDep,
                                  _: Operator) -> InvoicePublic:
    return await invoices.upcoming(runtime, tenant_id)


@router.get("/v1/admin/tenants/{tenant_id}/invoices/{inv_id}", response_model=InvoicePublic)
async def tenant_invoice(tenant_id: str, inv_id: str, runtime: RuntimeDep,
                         _: Operator) -> InvoicePublic:
    return invoices.invoice_public(runtime,
                                   await invoices.invoice_or_404(runtime, tenant_id, inv_id))


@router.get("/v1/admin/tenants/{tenant_id}/invoices/{inv_id}/pdf",
            response_class=RedirectResponse, status_code=307)
async def tenant_invoice_pdf(tenant_id: str, inv_id: str, runtime: RuntimeDep,
                             _: Operator) -> RedirectResponse:
    return invoices.pdf_redirect(runtime,
                                 await invoices.invoice_or_404(runtime, tenant_id, inv_id))


@router.post("/v1/admin/tenants/{tenant_id}/invoices/{inv_id}/void",
             response_model=InvoicePublic)
async def void_invoice(tenant_id: str, inv_id: str, runtime: RuntimeDep,
                       _: Operator) -> InvoicePublic:
    """Void a finalized invoice: its number stays taken, its credits become spendable again."""
    return await invoices.void_invoice(runtime, tenant_id, inv_id)

"""Invoices: a tenant reads its own; the operator reads all, closes periods and voids.

A tenant asking for another tenant's invoice gets 404, never 403: invoices are looked up
inside the caller's partition, so there is nothing to leak. PDF downloads are expiring
links (signed by the gateway for the local store, presigned for S3).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta

import orjson
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime
from processors.billing import invoice_codec
from processors.billing.core import messages
from processors.billing.core.close import compose_draft, late_periods, tenants_to_close
from processors.billing.core.invoice import InvoiceDocument, invoice_id
from processors.billing.inputs import seller_of, snapshot_of
from processors.kafka.async_producer import DeliveryFailed
from processors.usage.core.periods import period_bounds, period_of
from schemas import billing_commands_v1, webhooks_v1
from schemas.api_v1 import (
    BarrierWorkerPublic,
    BillingStatus,
    CloseAccepted,
    CloseRequest,
    InvoicePage,
    InvoicePublic,
)
from schemas.rfc3339 import time_text
from schemas.topics import BILLING_COMMANDS, INVOICES, WEBHOOK_EVENTS

log = logging.getLogger(__name__)

#: How long a PDF download link works.
LINK_TTL = timedelta(minutes=15)


def invoice_public(runtime: Runtime, doc: InvoiceDocument) -> InvoicePublic:
    body = invoice_codec.to_dict(doc)
    if doc.pdf_key:
        body["pdf_url"] = runtime.objects.link(doc.pdf_key, LINK_TTL)
    return InvoicePublic.model_validate(body)


async def invoice_or_404(runtime: Runtime, tenant_id: str, inv_id: str) -> InvoiceDocument:
    doc = await run_in_threadpool(runtime.invoices.get, tenant_id, inv_id)
    if doc is None:
        raise ProblemError(404, "invoice-not-found", "Invoice not found",
                           f"no invoice {inv_id} for tenant {tenant_id}")
    return doc


async def tenant_invoices(runtime: Runtime, tenant_id: str) -> list[InvoicePublic]:
    docs = await run_in_threadpool(runtime.invoices.for_tenant, tenant_id)
    return [invoice_public(runtime, d) for d in reversed(docs)]


def pdf_redirect(runtime: Runtime, doc: InvoiceDocument) -> RedirectResponse:
    if doc.pdf_key is None:
        raise ProblemError(409, "pdf-not-ready", "PDF not ready",
                           f"invoice {doc.id} has no PDF yet (drafts have none; a finalized "
                           "invoice gets one within seconds)", headers={"Retry-After": "2"})
    return RedirectResponse(runtime.objects.link(doc.pdf_key, LINK_TTL), status_code=307)


async def upcoming(runtime: Runtime, tenant_id: str) -> InvoicePublic:
    """The current period priced as it stands: a draft that is never stored or numbered."""
    now = datetime.now(UTC)
    period = period_of(now)
    history = await run_in_threadpool(runtime.invoices.for_tenant, tenant_id)
    if any(d.period == period and d.status != "draft" for d in history):
        raise ProblemError(404, "no-upcoming-invoice", "No upcoming invoice",
                           f"period {period} was already invoiced (closed on demand); usage "
                           "from now on is billed as late usage on the next invoice")
    keys = [(tenant_id, p) for p in (period, *late_periods(history, period))]
    counted = await run_in_threadpool(runtime.usage.read_many, keys)
    settings = runtime.settings
    draft = compose_draft(snapshot_of(runtime.directory, tenant_id), seller_of(settings),
                          settings.payment_terms_days, period, history,
                          {p: c for (_t, p), c in zip(keys, counted, strict=True)}, now)
    if isinstance(draft, str):
        raise ProblemError(404, "no-upcoming-invoice", "No upcoming invoice",
                           f"tenant {tenant_id}: {draft}")
    return invoice_public(runtime, draft)


async def close_period(runtime: Runtime, body: CloseRequest, cid: str) -> CloseAccepted:
    """Close a period now for some or all tenants. Closing is idempotent: a tenant's invoice
    for a period has one id, and a finalized invoice is never changed."""
    try:
        start, _end = period_bounds(body.period)
    except ValueError as exc:
        raise ProblemError(422, "invalid-period", "Invalid period", str(exc)) from None
    if start > datetime.now(UTC):
        raise ProblemError(422, "invalid-period", "Invalid period",
                           f"period {body.period} has not started")
    if body.tenant_ids is None:
        tenant_ids = tenants_to_close(runtime.directory.subscriptions(), body.period)
    else:
        unknown = [t for t in body.tenant_ids if runtime.directory.tenant(t) is None]
        if unknown:
            raise ProblemError(404, "tenant-not-found", "Tenant not found",
                               f"no tenant with id {', '.join(unknown)}")
        tenant_ids = list(dict.fromkeys(body.tenant_ids))
    topic = BILLING_COMMANDS.full_name(runtime.settings.topic_prefix)
    try:
        await asyncio.gather(*(
            runtime.producer.send(
                topic, billing_commands_v1.encode(
                    billing_commands_v1.CloseCommand(t, body.period, "operator")),
                key=t.encode(), headers=[("correlation-id", cid.encode())])
            for t in tenant_ids))
    except DeliveryFailed as exc:
        raise ProblemError(503, "billing-unavailable", "Billing unavailable",
                           f"Kafka did not take the close request ({exc}); retry it",
                           headers={"Retry-After": "1"}) from None
    log.info("period close requested", extra={"correlation_id": cid, "period": body.period,
                                              "tenants": len(tenant_ids)})
    await runtime.audit.record(
        "billing.close_requested", f"period:{body.period}",
        tenant_ids[0] if body.tenant_ids is not None and len(tenant_ids) == 1 else None,
        orjson.dumps({"period": body.period, "tenants": tenant_ids,
                      "correlation_id": cid}).decode())
    return CloseAccepted(period=body.period,
                         invoices={t: invoice_id(t, body.period) for t in tenant_ids})


def _cursor_key(runtime: Runtime) -> bytes:
    return hashlib.sha256(b"meterly-cursor\x00" + runtime.admin_token.encode()).digest()


def _cursor_out(runtime: Runtime, state: bytes | None) -> str | None:
    """A next_cursor: Cassandra's paging state behind a MAC, so that only a cursor this
    gateway handed out ever reaches Cassandra (a forged paging state breaks connections)."""
    if not state:
        return None
    tag = hmac.new(_cursor_key(runtime), state, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(tag + state).decode()


def _cursor_in(runtime: Runtime, text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        raw = b""
    tag, state = raw[:16], raw[16:]
    want = hmac.new(_cursor_key(runtime), state, hashlib.sha256).digest()[:16]
    if not state or not hmac.compare_digest(tag, want):
        raise ProblemError(400, "invalid-cursor", "Invalid cursor",
                           "pass next_cursor from the previous page unchanged")
    return state


async def all_invoices(runtime: Runtime, limit: int, cursor: str | None) -> InvoicePage:
    """Every tenant's invoices, a page at a time (storage order)."""
    docs, state = await run_in_threadpool(runtime.invoices.page, limit,
                                          _cursor_in(runtime, cursor))
    return InvoicePage(data=[invoice_public(runtime, d) for d in docs],
                       next_cursor=_cursor_out(runtime, state))


async def void_invoice(runtime: Runtime, tenant_id: str, inv_id: str) -> InvoicePublic:
    """Void a finalized invoice: its number stays taken, its credits become spendable again."""
    doc = await invoice_or_404(runtime, tenant_id, inv_id)
    if doc.status == "draft":
        raise ProblemError(409, "invoice-not-finalized", "Invoice not finalized",
                           "a draft cannot be voided; it is replaced when the period closes")
    if doc.status == "finalized":
        await run_in_threadpool(runtime.invoices.void, tenant_id, inv_id, datetime.now(UTC))
        doc = await invoice_or_404(runtime, tenant_id, inv_id)
        await runtime.producer.send(
            INVOICES.full_name(runtime.settings.topic_prefix),
            invoice_codec.encode_event(invoice_codec.VOIDED, doc), key=tenant_id.encode())
        await runtime.producer.send(
            WEBHOOK_EVENTS.full_name(runtime.settings.topic_prefix),
            webhooks_v1.encode_message(messages.voided(doc)), key=tenant_id.encode())
        await runtime.audit.record("invoice.voided", f"invoice:{inv_id}", tenant_id,
                                   orjson.dumps({"number": doc.number}).decode())
    return invoice_public(runtime, doc)


async def billing_status(runtime: Runtime) -> BillingStatus:
    workers = await run_in_threadpool(runtime.progress.read)
    known = [w.complete_through for w in workers if w.complete_through is not None]

    def text(moment: datetime | None) -> str | None:
        return time_text(moment) if moment is not None else None

    return BillingStatus(
        complete_through=text(max(known)) if known else None,
        closes_waiting=sum(w.closes_waiting for w in workers),
        workers=[BarrierWorkerPublic(
            worker=w.worker, complete_through=text(w.complete_through), stage=w.stage,
            waiting_since=text(w.waiting_since), records_behind=w.behind,
            closes_waiting=w.closes_waiting, updated_at=text(w.updated_at)) for w in workers])

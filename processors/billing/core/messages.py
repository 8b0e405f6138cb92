"""invoice.finalized and invoice.voided webhook messages, built from an invoice document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.billing.core.invoice import InvoiceDocument
from processors.billing.core.money import Money
from schemas import webhooks_v1
from schemas.rfc3339 import time_text
from schemas.webhooks_v1 import Message

#: How long the PDF link in invoice.finalized works: longer than the whole retry schedule
#: (about 31 hours), so even the last attempt carries a working link.
PDF_LINK_TTL = timedelta(days=7)


def _summary(doc: InvoiceDocument) -> dict[str, object]:
    def money(value: Money) -> dict[str, str]:
        return {"amount": str(value.amount), "currency": value.currency}

    return {
        "id": doc.id, "number": doc.number, "status": doc.status, "tenant_id": doc.tenant_id,
        "period": doc.period, "subtotal": money(doc.subtotal), "tax": money(doc.tax),
        "total": money(doc.total), "amount_due": money(doc.amount_due),
        "issued_at": time_text(doc.issued_at, "seconds"),
        "due_at": time_text(doc.due_at, "seconds"),
    }


def finalized(doc: InvoiceDocument, pdf_url: str, pdf_sha256: str) -> Message:
    expires = datetime.now(UTC) + PDF_LINK_TTL
    data = {"invoice": {**_summary(doc), "pdf_url": pdf_url,
                        "pdf_url_expires_at": time_text(expires, "seconds"),
                        "pdf_sha256": pdf_sha256}}
    return Message(f"msg_{doc.id}_finalized", webhooks_v1.INVOICE_FINALIZED, doc.tenant_id,
                   time_text(datetime.now(UTC), "seconds"), data)


def voided(doc: InvoiceDocument) -> Message:
    data = {"invoice": {**_summary(doc), "voided_at": time_text(
        doc.voided_at or datetime.now(UTC), "seconds")}}
    return Message(f"msg_{doc.id}_voided", webhooks_v1.INVOICE_VOIDED, doc.tenant_id,
                   time_text(datetime.now(UTC), "seconds"), data)

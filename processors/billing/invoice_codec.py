"""``invoice.v1`` JSON: the invoice document as stored in Cassandra and sent on Kafka.

Amounts are strings of exact decimals with their currency (``{"amount": "12.50",
"currency": "EUR"}``), times RFC 3339 UTC. Readers ignore unknown fields, so adding a field
is not a new version; changing one is.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from processors.billing.core.invoice import (
    CreditApplication,
    InvoiceDocument,
    InvoiceLine,
    OpenGap,
    Party,
)
from processors.billing.core.money import Money
from processors.billing.core.pricing import TierCharge
from schemas.rfc3339 import parse_time, time_text

VERSION = 1


def _money(m: Money) -> dict[str, str]:
    return {"amount": str(m.amount), "currency": m.currency}


def _from_money(d: dict[str, str]) -> Money:
    return Money(Decimal(d["amount"]), d["currency"])


def _time(t: datetime | None) -> str | None:
    # Whole precision ("auto"): a stored document reads back to the same instant.
    return None if t is None else time_text(t, "auto")


def _from_time(s: str | None) -> datetime | None:
    return None if s is None else parse_time(s)


def _required_time(d: dict[str, Any], name: str) -> datetime:
    value = _from_time(d.get(name))
    if value is None:
        raise ValueError(f"invoice document without {name}")
    return value


def _dec(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def _party(p: Party) -> dict[str, Any]:
    return {"name": p.name, "address": list(p.address), "email": p.email, "tax_id": p.tax_id}


def _from_party(d: dict[str, Any]) -> Party:
    return Party(d["name"], tuple(d.get("address", ())), d.get("email"), d.get("tax_id"))


def _tier(t: TierCharge) -> dict[str, Any]:
    return {"tier": t.tier, "quantity": str(t.quantity), "unit_price": str(t.unit_price),
            "flat_fee": str(t.flat_fee), "amount": str(t.amount)}


def _from_tier(d: dict[str, Any]) -> TierCharge:
    return TierCharge(d["tier"], Decimal(d["quantity"]), Decimal(d["unit_price"]),
                      Decimal(d["flat_fee"]), Decimal(d["amount"]))


def to_dict(doc: InvoiceDocument) -> dict[str, Any]:
    return {
        "v": VERSION, "id": doc.id, "number": doc.number, "status": doc.status,
        "tenant_id": doc.tenant_id, "period": doc.period,
        "period_start": _time(doc.period_start), "period_end": _time(doc.period_end),
        "currency": doc.currency, "seller": _party(doc.seller), "buyer": _party(doc.buyer),
        "plan": doc.plan, "plan_version": doc.plan_version,
        "lines": [{
            "kind": ln.kind, "description": ln.description, "period": ln.period,
            "amount": _money(ln.amount), "meter": ln.meter, "quantity": _dec(ln.quantity),
            "included": str(ln.included), "tiers": [_tier(t) for t in ln.tiers],
        } for ln in doc.lines],
        "subtotal": _money(doc.subtotal), "tax_rate": _dec(doc.tax_rate),
        "tax": _money(doc.tax), "total": _money(doc.total),
        "credits": [{
            "credit_id": c.credit_id, "kind": c.kind, "description": c.description,
            "amount": _money(c.amount), "remaining": _money(c.remaining),
        } for c in doc.credits],
        "credits_applied": _money(doc.credits_applied), "amount_due": _money(doc.amount_due),
        "credit_balance": _money(doc.credit_balance),
        "issued_at": _time(doc.issued_at), "due_at": _time(doc.due_at),
        "finalized_at": _time(doc.finalized_at), "voided_at": _time(doc.voided_at),
        "billed_usage": {p: {m: str(q) for m, q in meters.items()}
                         for p, meters in doc.billed_usage.items()},
        "pdf_key": doc.pdf_key, "pdf_sha256": doc.pdf_sha256,
        "complete_through": _time(doc.complete_through),
        "open_gaps": [{"source": g.source, "missing": g.missing, "range_count": g.range_count,
                       "ranges": [list(r) for r in g.ranges]} for g in doc.open_gaps],
    }


def from_dict(d: dict[str, Any]) -> InvoiceDocument:
    if d.get("v") != VERSION:
        raise ValueError(f"unsupported invoice document version {d.get('v')!r}")
    start, end = _required_time(d, "period_start"), _required_time(d, "period_end")
    issued, due = _required_time(d, "issued_at"), _required_time(d, "due_at")
    return InvoiceDocument(
        id=d["id"], tenant_id=d["tenant_id"], period=d["period"], period_start=start,
        period_end=end, currency=d["currency"], seller=_from_party(d["seller"]),
        buyer=_from_party(d["buyer"]), plan=d["plan"], plan_version=d["plan_version"],
        lines=tuple(InvoiceLine(
            ln["kind"], ln["description"], ln["period"], _from_money(ln["amount"]),
            ln.get("meter"), None if ln.get("quantity") is None else Decimal(ln["quantity"]),
            Decimal(ln.get("included", "0")), tuple(_from_tier(t) for t in ln.get("tiers", ())),
        ) for ln in d["lines"]),
        subtotal=_from_money(d["subtotal"]),
        tax_rate=None if d.get("tax_rate") is None else Decimal(d["tax_rate"]),
        tax=_from_money(d["tax"]), total=_from_money(d["total"]),
        credits=tuple(CreditApplication(
            c["credit_id"], c["kind"], c["description"], _from_money(c["amount"]),
            _from_money(c["remaining"])) for c in d.get("credits", ())),
        credits_applied=_from_money(d["credits_applied"]),
        amount_due=_from_money(d["amount_due"]), credit_balance=_from_money(d["credit_balance"]),
        issued_at=issued, due_at=due,
        billed_usage={p: {m: Decimal(q) for m, q in meters.items()}
                      for p, meters in d.get("billed_usage", {}).items()},
        status=d["status"], number=d.get("number"),
        finalized_at=_from_time(d.get("finalized_at")), voided_at=_from_time(d.get("voided_at")),
        pdf_key=d.get("pdf_key"), pdf_sha256=d.get("pdf_sha256"),
        complete_through=_from_time(d.get("complete_through")),
        open_gaps=tuple(OpenGap(g["source"], int(g["missing"]),
                                tuple((int(a), int(b)) for a, b in g["ranges"]),
                                int(g["range_count"])) for g in d.get("open_gaps", ())),
    )


def encode(doc: InvoiceDocument) -> bytes:
    return orjson.dumps(to_dict(doc))


def decode(raw: bytes | str) -> InvoiceDocument:
    return from_dict(orjson.loads(raw))


#: Event types on the invoices topic.
FINALIZED = "invoice.finalized"
VOIDED = "invoice.voided"


def encode_event(kind: str, doc: InvoiceDocument) -> bytes:
    """An invoices-topic record: ``{"type": "invoice.finalized", "invoice": {...}}``."""
    return orjson.dumps({"type": kind, "invoice": to_dict(doc)})


def decode_event(raw: bytes) -> tuple[str, InvoiceDocument]:
    doc = orjson.loads(raw)
    return doc["type"], from_dict(doc["invoice"])

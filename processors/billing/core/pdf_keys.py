"""Where an invoice's PDFs are stored, and which invoice a stored PDF belongs to. Pure.

``invoices/<tenant>/<invoice>.pdf`` is the finalized invoice; once it is voided the renderer
stores ``invoices/<tenant>/<invoice>-void.pdf`` (stamped VOID) beside it, and links to the
first are refused from the moment of the void.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"invoices/(?P<tenant>[A-Za-z0-9_.-]+)/(?P<invoice>[A-Za-z0-9_.-]+?)"
                  r"(?P<void>-void)?\.pdf")


@dataclass(frozen=True)
class PdfOf:
    tenant_id: str
    invoice_id: str
    void: bool


def pdf_key(tenant_id: str, invoice_id: str) -> str:
    return f"invoices/{tenant_id}/{invoice_id}.pdf"


def void_pdf_key(tenant_id: str, invoice_id: str) -> str:
    return f"invoices/{tenant_id}/{invoice_id}-void.pdf"


def invoice_of(key: str) -> PdfOf | None:
    """The invoice whose PDF ``key`` is, or None for a key that is no invoice PDF."""
    found = _KEY.fullmatch(key)
    if found is None:
        return None
    return PdfOf(found["tenant"], found["invoice"], found["void"] is not None)

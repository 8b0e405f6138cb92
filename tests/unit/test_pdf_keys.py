"""Invoice PDF keys, both ways."""

from __future__ import annotations

from processors.billing.core.pdf_keys import PdfOf, invoice_of, pdf_key, void_pdf_key


def test_keys_name_their_invoice_back() -> None:
    assert invoice_of(pdf_key("ten_1", "inv_202612_ab")) == PdfOf("ten_1", "inv_202612_ab", False)
    assert invoice_of(void_pdf_key("ten_1", "inv_202612_ab")) == \
        PdfOf("ten_1", "inv_202612_ab", True)


def test_other_keys_are_no_invoice() -> None:
    for key in ("exports/usage.csv", "invoices/ten_1.pdf", "invoices/a/b/c.pdf",
                "invoices/ten_1/inv.PDF", "xinvoices/ten_1/inv.pdf", "invoices/ten_1/.pdf"):
        assert invoice_of(key) is None, key

"""Invoice PDFs, read back with pypdf: every figure on the page is the document's own.

Expected text is built here from the document's fields with this file's own formatting
(``_money``, ``_qty``), not with the renderer's helpers, so a formatting bug shows up.
Page 1 of the sample invoice is also rendered to test-artifacts/invoice-page1.png for a look.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from pypdf import PdfReader

from processors.billing import invoice_codec
from processors.billing.core.invoice import (
    BillingParty,
    Credit,
    InvoiceDocument,
    LateUsage,
    OpenGap,
    Party,
    PlanAssignment,
    compose_invoice,
    period_charge,
)
from processors.billing.core.invoice_pdf import format_money, pdf_text, render_invoice_pdf
from processors.billing.core.money import Money
from processors.billing.core.pricing import Graduated, MeterPrice, Package, PerUnit, Plan, Tier

D = Decimal
REPO = Path(__file__).resolve().parents[2]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

TIERS = (Tier(D(1000), D("0.01")), Tier(D(10000), D("0.008"), D(5)), Tier(None, D("0.005")))
PLAN = Plan("Growth", 3, "EUR", {
    "api_calls": MeterPrice(Graduated(TIERS), included=D(500)),
    "storage_gb": MeterPrice(PerUnit(D("0.125"))),
    "exports": MeterPrice(Package(D(100), D("2.50"))),
}, flat_fee=D("49.00"))
SELLER = Party("Meterly GmbH", ("Torstrasse 1", "10119 Berlin", "Germany"),
               "billing@meterly.example", "DE123456789")
BUYER = Party("Acme Analytics Ltd", ("1 Long Lane", "London EC1A 9HF"), "ap@acme.example",
              "GB987654321")
ISSUED = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
USAGE = {"api_calls": D(12500), "storage_gb": D("1234.5"), "exports": D(201)}


def _doc(number: str | None = "MTR-2026-000123", buyer: Party = BUYER, seller: Party = SELLER,
         grant: str = "50.00", plan: Plan = PLAN,
         usage: dict[str, Decimal] | None = None) -> InvoiceDocument:
    party = BillingParty("t_acme", "EUR", buyer, tax_rate=D(19), payment_terms_days=30)
    doc = compose_invoice(
        party, seller, "2026-10", [PlanAssignment(datetime(2026, 1, 1, tzinfo=UTC), plan)],
        USAGE if usage is None else usage, ISSUED,
        late=[LateUsage("2026-09", [PlanAssignment(datetime(2026, 1, 1, tzinfo=UTC), plan)],
                        {"api_calls": D(9000)}, {"api_calls": D(9800)},
                        period_charge("2026-09", [PlanAssignment(
                            datetime(2026, 1, 1, tzinfo=UTC), plan)], {"api_calls": D(9000)},
                            "EUR"))],
        credits=[Credit("cr_1", "grant", "Prepaid credit grant", Money(D(grant), "EUR"),
                        datetime(2026, 5, 1, tzinfo=UTC))],
    )
    assert doc is not None
    if number is None:
        return doc
    return replace(doc, number=number, status="finalized", finalized_at=ISSUED)


def _money(amount: Decimal, currency: str = "EUR") -> str:
    cents = amount.quantize(D("0.01"))
    shown = cents if cents == amount else amount.normalize()
    return f"{shown:,f} {currency}"


def _qty(value: Decimal) -> str:
    return f"{value:,f}"


def _day(moment: datetime) -> str:
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def _strings_outside_the_body(pdf: bytes) -> list[tuple[int, str, float, float]]:
    """Strings drawn off the page or, footers apart, into the footer (page, text, x, y in mm
    from the bottom left)."""
    bad = []
    for number, page in enumerate(PdfReader(io.BytesIO(pdf)).pages, start=1):
        found: list[tuple[str, float, float]] = []

        def visit(text: str, cm: list[float], tm: list[float], *_: object,
                  found: list[tuple[str, float, float]] = found) -> None:
            if text.strip():
                found.append((text.strip(), tm[4] * 25.4 / 72, tm[5] * 25.4 / 72))

        page.extract_text(visitor_text=visit)
        assert found
        for text, x, y in found:
            footer = text.startswith(("Invoice ", "Draft invoice", "Page "))
            # The footer's rule is 16 mm above the bottom edge: body text keeps clear of it.
            if not (0 < x < 210 and (footer or 20 < y < 297)):
                bad.append((number, text, x, y))
    return bad


def _row(text: str, start: str) -> str:
    """The one extracted text line that starts with ``start``."""
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, rows)
    return rows[0]


@pytest.fixture(scope="module")
def sample() -> InvoiceDocument:
    return _doc()


@pytest.fixture(scope="module")
def sample_text(sample: InvoiceDocument) -> str:
    pdf = render_invoice_pdf(sample)
    assert _strings_outside_the_body(pdf) == []
    pages = _pages(pdf)
    assert len(pages) == 1
    return pages[0]


def test_sample_document_has_what_the_pdf_must_show(sample: InvoiceDocument) -> None:
    # The cases below rely on these: a tiered line, included units, a flat tier fee, a
    # package, an adjustment, tax and a credit.
    kinds = [line.kind for line in sample.lines]
    assert kinds.count("usage") == 3
    assert "adjustment" in kinds
    assert "flat_fee" in kinds
    assert any(len(line.tiers) == 3 and line.included for line in sample.lines)
    assert sample.tax.amount > 0
    assert sample.credits
    assert sample.amount_due.amount > 0


def test_header_parties_and_details(sample: InvoiceDocument, sample_text: str) -> None:
    assert sample.number is not None
    assert "INVOICE" in sample_text
    assert "DRAFT" not in sample_text
    assert "VOID" not in sample_text
    assert _row(sample_text, "Invoice number") == f"Invoice number {sample.number}"
    for party in (sample.seller, sample.buyer):
        assert party.name in sample_text
        for line in party.address:
            assert line in sample_text
        assert f"{party.email}" in sample_text
        assert f"Tax ID: {party.tax_id}" in sample_text
    last_day = sample.period_end - timedelta(days=1)
    assert last_day.day == 31
    period = f"{_day(sample.period_start)} \u2013 {_day(last_day)}"
    assert _row(sample_text, "Billing period") == f"Billing period {period}"
    assert _row(sample_text, "Issue date") == f"Issue date {_day(sample.issued_at)}"
    assert _row(sample_text, "Due date") == f"Due date {_day(sample.due_at)}"
    assert f"Due {_day(sample.due_at)}" in _row(sample_text, f"Invoice {sample.number}")
    assert _row(sample_text, "Plan") == f"Plan {sample.plan} (version {sample.plan_version})"
    assert _row(sample_text, "Invoice ID") == f"Invoice ID {sample.id}"
    assert "Page 1 of 1" in sample_text


def test_every_line_with_quantity_included_units_and_amount(sample: InvoiceDocument,
                                                           sample_text: str) -> None:
    for line in sample.lines:
        row = _row(sample_text, line.description)
        assert row.endswith(f" {_money(line.amount.amount)}"), row
        if line.quantity is not None:
            assert f" {_qty(line.quantity)} " in row, row
        if line.included:
            assert f" {_qty(line.included)} included " in row, row
    adjustment = next(line for line in sample.lines if line.kind == "adjustment")
    assert adjustment.description == "Late usage for 2026-09: api_calls +800"


def test_tier_breakdown_rows(sample: InvoiceDocument, sample_text: str) -> None:
    graduated = next(line for line in sample.lines if len(line.tiers) > 1)
    for tier in graduated.tiers:
        row = _row(sample_text, f"Tier {tier.tier}: ")
        expected = f"Tier {tier.tier}: {_qty(tier.quantity)} x {tier.unit_price}"
        if tier.flat_fee:
            expected += f" + {_money(tier.flat_fee)} flat fee"
        assert row == f"{expected} {_money(tier.amount)}"
    # Tiers add up to the line before its one rounding.
    exact = sum((t.amount for t in graduated.tiers), D(0))
    assert exact.quantize(D("0.01")) == graduated.amount.amount

    per_unit = next(line for line in sample.lines if line.meter == "storage_gb")
    (tier,) = per_unit.tiers
    assert tier.amount != per_unit.amount.amount  # exact share shown, not the rounded line
    assert f"{_qty(tier.quantity)} x {tier.unit_price} {_money(tier.amount)}" in sample_text

    package = next(line for line in sample.lines if line.meter == "exports")
    (tier,) = package.tiers
    packages = tier.amount / tier.unit_price
    assert (f"{_qty(tier.quantity)} units, {packages:f} packages x {tier.unit_price} "
            f"{_money(tier.amount)}") in sample_text


def test_totals(sample: InvoiceDocument, sample_text: str) -> None:
    assert sample.tax_rate is not None
    assert _row(sample_text, "Subtotal") == f"Subtotal {_money(sample.subtotal.amount)}"
    assert _row(sample_text, "Tax (") == f"Tax ({sample.tax_rate}%) {_money(sample.tax.amount)}"
    assert _row(sample_text, "Total") == f"Total {_money(sample.total.amount)}"
    for credit in sample.credits:
        assert (_row(sample_text, credit.description)
                == f"{credit.description} -{_money(credit.amount.amount)}")
    assert _row(sample_text, "Amount due") == f"Amount due {_money(sample.amount_due.amount)}"
    assert sample.credit_balance.amount == 0
    assert "Credit balance remaining" not in sample_text


def test_credit_larger_than_the_total_leaves_a_balance() -> None:
    doc = _doc(grant="1000.00")
    text = _pages(render_invoice_pdf(doc))[0]
    assert doc.amount_due.amount == 0
    assert doc.credit_balance.amount > 0
    assert _row(text, "Amount due") == f"Amount due {_money(doc.amount_due.amount)}"
    assert (_row(text, "Credit balance remaining")
            == f"Credit balance remaining {_money(doc.credit_balance.amount)}")
    assert f"-{_money(doc.total.amount)}" in text


def test_no_tax_row_without_a_tax_rate(sample: InvoiceDocument) -> None:
    text = _pages(render_invoice_pdf(replace(sample, tax_rate=None)))[0]
    assert "Tax (" not in text


def test_draft_and_void(sample: InvoiceDocument) -> None:
    draft = _doc(number=None)
    assert draft.number is None
    assert draft.status == "draft"
    draft_text = _pages(render_invoice_pdf(draft))[0]
    assert "DRAFT INVOICE" in draft_text
    assert "VOID" not in draft_text
    assert "Draft invoice" in draft_text

    void = replace(sample, status="void", voided_at=ISSUED + timedelta(days=2))
    void_text = _pages(render_invoice_pdf(void))[0]
    assert "VOID" in void_text
    assert f"Invoice number {sample.number}" in void_text


def test_same_document_same_bytes_and_creation_date_is_the_issue_time(
        sample: InvoiceDocument, monkeypatch: pytest.MonkeyPatch) -> None:
    first = render_invoice_pdf(sample)
    time.sleep(1.1)  # a creation date taken from the clock would now differ
    assert render_invoice_pdf(sample) == first
    # What is stored is invoice.v1 JSON: rendering the decoded document must match too.
    assert render_invoice_pdf(invoice_codec.decode(invoice_codec.encode(sample))) == first
    if hasattr(time, "tzset"):  # the machine's time zone must not leak in
        monkeypatch.setenv("TZ", "America/Los_Angeles")
        time.tzset()
        try:
            assert render_invoice_pdf(sample) == first
        finally:
            monkeypatch.undo()
            time.tzset()
    assert render_invoice_pdf(replace(sample, number="MTR-2026-000124")) != first

    reader = PdfReader(io.BytesIO(first))
    assert reader.metadata is not None
    assert reader.metadata.creation_date == sample.issued_at
    assert reader.metadata.title == f"Invoice {sample.number}"
    assert reader.metadata.author == sample.seller.name
    assert reader.metadata.subject
    assert sample.buyer.name in reader.metadata.subject


def test_text_outside_the_core_fonts_does_not_crash() -> None:
    buyer = Party("株式会社テスト \U0001f600 Zoë\tand\nSøn", ("Ünïcødé Straße 5", "東京都"),
                  "ap@example.jp", "JP-1")
    seller = Party("Meterly \u20ac Ltd \u2013 Ελλάδα", ())
    doc = _doc(buyer=buyer, seller=seller)
    pdf = render_invoice_pdf(doc)
    text = _pages(pdf)[0]
    assert "??????? ? Zoë and Søn" in text  # other scripts as "?", tab/newline as spaces
    assert "Ünïcødé Straße 5" in text
    assert "Meterly \u20ac Ltd \u2013 ??????" in text  # cp1252 has the euro sign and dash
    assert _row(text, "Amount due") == f"Amount due {_money(doc.amount_due.amount)}"
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None
    assert reader.metadata.author == seller.name


def test_very_long_texts_are_cut_and_stay_on_the_page() -> None:
    seller = Party("S" * 3000, ("street " * 400,))
    buyer = Party("Buyer " * 500, ("B" * 5000,), "ap@example.com")
    meters = {"m" * 400: MeterPrice(PerUnit(D(1)))}
    doc = _doc(seller=seller, buyer=buyer, plan=Plan("Plan " * 100, 1, "EUR", meters),
               usage=dict.fromkeys(meters, D(5)))
    doc = replace(doc, credits=tuple(replace(c, description="credit " * 300)
                                     for c in doc.credits))
    begun = time.perf_counter()
    pdf = render_invoice_pdf(doc)
    assert time.perf_counter() - begun < 1
    assert _strings_outside_the_body(pdf) == []
    text = "\n".join(_pages(pdf))
    assert text.count("\u2026") >= 6  # seller, address, buyer, plan, meter, credit
    assert _row(text, "Amount due") == f"Amount due {_money(doc.amount_due.amount)}"


def test_pdf_text_and_money_formatting() -> None:
    assert pdf_text("plain ASCII") == "plain ASCII"
    assert pdf_text("Zoë \u20ac \u2013 \u4e2d") == "Zoë \u20ac \u2013 ?"
    assert format_money(D("1234.5"), "EUR") == "1,234.50 EUR"
    assert format_money(D("72.000"), "EUR") == "72.00 EUR"
    assert format_money(D("0.0135"), "USD") == "0.0135 USD"
    assert format_money(D("1234567"), "JPY") == "1,234,567 JPY"
    assert format_money(D("-25"), "KWD") == "-25.000 KWD"
    assert format_money(D("1E+3"), "EUR") == "1,000.00 EUR"


def test_three_hundred_lines_flow_over_pages_with_the_table_header_repeated() -> None:
    meters = {f"meter_{n:03d}": MeterPrice(PerUnit(D("0.01"))) for n in range(300)}
    plan = Plan("Wide", 1, "EUR", meters)
    usage = {meter: D(1000 + 7 * n) for n, meter in enumerate(sorted(meters))}
    doc = _doc(plan=plan, usage=usage)
    assert len(doc.lines) == 300
    pdf = render_invoice_pdf(doc)
    assert _strings_outside_the_body(pdf) == []
    pages = _pages(pdf)
    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        assert _row(page, "Description") == "Description Quantity Details Amount"
        assert f"Page {number} of {len(pages)}" in page
    text = "\n".join(pages)
    for line in doc.lines:
        assert _row(text, f"{line.description} ").endswith(f" {_money(line.amount.amount)}")
    assert _row(text, "Amount due") == f"Amount due {_money(doc.amount_due.amount)}"
    assert "Amount due" in pages[-1]


def test_whatever_the_line_count_nothing_runs_into_the_footer() -> None:
    # Between them these counts end the table at every height of a page, so the totals
    # block sometimes fits under it and sometimes has to move to a page of its own.
    # A tiered line last ("zz"), whose tier rows must stay on its page.
    for count in range(15, 50):
        meters = {f"m{n:02d}": MeterPrice(PerUnit(D("0.5"))) for n in range(count)}
        meters["zz"] = MeterPrice(Graduated(TIERS))
        doc = _doc(plan=Plan("Many", 1, "EUR", meters), usage=dict.fromkeys(meters, D(12000)))
        pdf = render_invoice_pdf(doc)
        assert _strings_outside_the_body(pdf) == [], count
        pages = _pages(pdf)
        assert _row(pages[-1], "Amount due").endswith(_money(doc.amount_due.amount))
        (tiered,) = (page for page in pages if "\nzz " in page)
        assert all(f"Tier {n}: " in tiered for n in (1, 2, 3)), count


def test_a_line_with_more_tier_rows_than_a_page_holds_is_split() -> None:
    tiers = (*(Tier(D(10 * n), D(n) / 1000) for n in range(1, 90)), Tier(None, D("0.1")))
    plan = Plan("Many", 1, "EUR", {"api_calls": MeterPrice(Graduated(tiers))})
    doc = _doc(plan=plan, usage={"api_calls": D(5000)})
    (line,) = (ln for ln in doc.lines if ln.tiers)
    assert len(line.tiers) == 90
    pdf = render_invoice_pdf(doc)
    assert _strings_outside_the_body(pdf) == []
    pages = _pages(pdf)
    assert len(pages) > 1
    text = "\n".join(pages)
    for tier in line.tiers:
        assert _row(text, f"Tier {tier.tier}: ").endswith(f" {_money(tier.amount)}")


def test_page_one_renders_to_png(sample: InvoiceDocument) -> None:
    out = REPO / "test-artifacts" / "invoice-page1.png"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    document = pdfium.PdfDocument(render_invoice_pdf(sample))
    try:
        image = document[0].render(scale=2).to_pil()
        image.save(out)
    finally:
        document.close()
    assert out.stat().st_size > 20_000
    a4_points = (210 / 25.4 * 72, 297 / 25.4 * 72)
    assert abs(image.width - 2 * a4_points[0]) <= 1
    assert abs(image.height - 2 * a4_points[1]) <= 1
    grey = image.convert("L")
    inked = sum(grey.histogram()[:128])  # dark pixels: text was drawn
    assert inked > 0.005 * image.width * image.height


@pytest.mark.parametrize(("through", "shown"), [
    (None, None),
    ("end", "Usage counted the whole period"),
    ("mid", "Usage counted to 2026-10-20 08:15:02 UTC"),
])
def test_the_usage_the_close_barrier_proved_is_on_the_invoice(
        sample: InvoiceDocument, through: str | None, shown: str | None) -> None:
    moment = {None: None, "end": sample.period_end,
              "mid": datetime(2026, 10, 20, 8, 15, 2, 900000, tzinfo=UTC)}[through]
    text = "\n".join(_pages(render_invoice_pdf(replace(sample, complete_through=moment))))
    if shown is None:
        assert "Usage counted" not in text
    else:
        assert _row(text, "Usage counted") == shown


def test_producer_gaps_at_close_are_listed(sample: InvoiceDocument) -> None:
    gaps = (OpenGap("billing-exporter", 6, ((10, 14), (50, 50)), 2),
            OpenGap("orders", 40, tuple((n * 10, n * 10 + 3) for n in range(10)), 12))
    text = "\n".join(_pages(render_invoice_pdf(replace(sample, open_gaps=gaps))))
    assert "Producer sequence gaps at close" in text
    assert "billing-exporter: 6 missing (10\u201314, 50)" in text
    assert "and 2 more ranges" in text
    assert "Producer sequence gaps" not in "\n".join(_pages(render_invoice_pdf(sample)))

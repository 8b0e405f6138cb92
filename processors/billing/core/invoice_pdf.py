"""Invoice PDFs: an ``InvoiceDocument`` in, the bytes of an A4 PDF out. Pure, in memory.

The bytes are stored with their SHA-256 and a re-render must reproduce them, so nothing
here may depend on the clock, the locale or chance (checked against fpdf2 2.8.9's source):

- fpdf2 stamps ``datetime.now()`` as the creation date: it is set to the invoice's
  ``issued_at``, in UTC (fpdf2 would read a naive time in the machine's zone);
- the trailer's /ID is fpdf2's default, an MD5 of the document bytes and that date;
- page streams are not compressed: zlib builds differ in what they output;
- no XMP packet is written (fpdf2 only builds one, with "now" as ModifyDate, for PDF/A);
- "page x of y" is written once the layout knows y, not with fpdf2's ``{nb}`` alias (whose
  placeholder is a random UUID, replaced at output);
- month names come from a table here, not from ``strftime`` (locale dependent).

The bytes also depend on how fpdf2 serialises a document, so on its version, which is pinned:
upgrading fpdf2 may change the bytes of a re-rendered invoice.

The layout is computed first, as positioned text, rules and bands per page, and painted
after: the page count is known before any footer is written, and a line with its tier rows
moves to the next page as a whole. Painting uses ``FPDF.text`` and measures text from the
core font metrics directly: ``cell`` and ``get_string_width`` run fpdf2's fragment and line
breaking machinery, about 30 and 10 microseconds a call against 3 for ``text``, which made
them most of the cost of an invoice.

Core fonts (Helvetica, no font files) have the 256 glyphs of WinAnsiEncoding, which fpdf2
declares for them; text is encoded as cp1252 rather than fpdf2's default latin-1 so that the
euro sign and the en dash print, and anything else becomes "?" in ``pdf_text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from processors.billing.core.invoice import InvoiceDocument, InvoiceLine, Party
from processors.billing.core.money import minor_units
from processors.billing.core.pricing import TierCharge

ENCODING = "cp1252"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Control characters would go raw into PDF strings: a name with a newline prints on one line.
_CONTROLS = {code: " " for code in (*range(32), 127)}

# Geometry in mm: A4, 15 mm margins.
PAGE_W, PAGE_H = 210.0, 297.0
LEFT, RIGHT = 15.0, 195.0
PAD = 2.0  # text inset inside the table and the amount-due band
BODY_BOTTOM = 276.0  # nothing but the footer below
PT = 25.4 / 72  # one point in mm

# Table: description | quantity (right aligned) | details | amount (right aligned).
DESC_X, DESC_W = LEFT + PAD, 78.0
QTY_R = 127.0
DETAIL_X, DETAIL_W = 131.0, 30.0
AMOUNT_R = RIGHT - PAD
TIER_X = DESC_X + 5.0
TIER_W = DETAIL_X + DETAIL_W - TIER_X
HEAD_H = 7.0
ROW_LINE, TIER_LINE = 4.4, 4.0  # line heights in a line's first row and in its tier rows
ROW_PAD = 1.8  # above and below a line and its tier rows

# Right-hand blocks (invoice details, totals): labels at COLUMN_X.
COLUMN_X = 112.0
DETAIL_VALUE_X = COLUMN_X + 26.0
TOTALS_LABEL_W = 46.0
TOTALS_LINE = 5.2

Colour = tuple[int, int, int]
GREY: Colour = (110, 110, 110)
BLACK: Colour = (25, 25, 25)
RED: Colour = (200, 30, 30)
RULE: Colour = (200, 200, 200)
BAND: Colour = (238, 240, 243)
WATERMARK_RED: Colour = (245, 200, 200)

#: Style ("" or "B"), size in points, colour.
Font = tuple[str, float, Colour]
SELLER_NAME: Font = ("B", 18, BLACK)
TITLE: Font = ("B", 20, BLACK)
NUMBER: Font = ("", 11, GREY)
VOID_MARK: Font = ("B", 26, RED)
WATERMARK: Font = ("B", 120, WATERMARK_RED)
SECTION: Font = ("B", 8, GREY)
BUYER_NAME: Font = ("B", 10, BLACK)
BODY: Font = ("", 9, BLACK)
ADDRESS: Font = ("", 9, GREY)
LABEL: Font = ("", 8.5, GREY)
TABLE_HEAD: Font = ("B", 8.5, BLACK)
TIER_ROW: Font = ("", 8, GREY)
TOTAL_LABEL: Font = ("", 9, GREY)
TOTAL: Font = ("B", 9, BLACK)
AMOUNT_DUE: Font = ("B", 11, BLACK)
NOTE: Font = ("", 8.5, GREY)
FOOTER: Font = ("", 8, GREY)
CONTINUED: Font = ("B", 9, GREY)


def _unicode_widths(fontkey: str) -> dict[str, int]:
    """fpdf2's glyph widths of a core font, keyed by the Unicode character rather than by
    its cp1252 byte, so text is measured without encoding it."""
    by_byte = CORE_FONTS_CHARWIDTHS[fontkey]
    widths: dict[str, int] = {}
    for code in range(256):
        try:
            widths[bytes([code]).decode(ENCODING)] = by_byte[chr(code)]
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            continue
    return widths


_WIDTHS = {"": _unicode_widths("helvetica"), "B": _unicode_widths("helveticaB")}


def pdf_text(text: str) -> str:
    """``text`` as the core fonts can print it: characters outside cp1252 (other scripts,
    emoji) become "?", control characters a space."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_CONTROLS).encode(ENCODING, "replace").decode(ENCODING)


def text_width(text: str, font: Font) -> float:
    """Width in mm of ``text`` (already through ``pdf_text``) in ``font``."""
    widths = _WIDTHS[font[0]]
    return sum(widths[c] for c in text) * font[1] * PT / 1000


def wrap(text: str, width: float, font: Font, limit: int) -> list[str]:
    """``text`` (already through ``pdf_text``) broken at spaces into lines no wider than
    ``width``; a word longer than a line is broken where it reaches the edge. Past ``limit``
    lines the text is cut with an ellipsis: a name pasted ten times must not push the
    invoice off its page."""
    if text_width(text, font) <= width:
        return [text]
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        *full, current = _break_word(word, width, font)
        lines.extend(full)
    lines.append(current)
    if len(lines) > limit:
        last = lines[limit - 1]
        while last and text_width(f"{last}\u2026", font) > width:
            last = last[:-1]
        lines[limit - 1:] = [f"{last}\u2026"]
    return lines


def _break_word(word: str, width: float, font: Font) -> list[str]:
    """``word`` in pieces no wider than ``width`` (at least one character each), in one pass:
    a name without spaces may be thousands of characters long."""
    widths, scale = _WIDTHS[font[0]], font[1] * PT / 1000
    pieces: list[str] = []
    start, used = 0, 0.0
    for index, char in enumerate(word):
        advance = widths[char] * scale
        if used + advance > width and index > start:
            pieces.append(word[start:index])
            start, used = index, 0.0
        used += advance
    pieces.append(word[start:])
    return pieces


# ---- formatting -----------------------------------------------------------------------


def format_decimal(value: Decimal) -> str:
    """A quantity or price with the digits the Decimal holds and thousands separators."""
    return format(value, ",f")


def format_money(amount: Decimal, currency: str) -> str:
    """``1,234.50 EUR``: at least the currency's minor digits, more only when the amount has
    them (a tier's exact share may be 0.0135); never rounded, never through float."""
    places = minor_units(currency)
    shown = amount.normalize()
    exponent = shown.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -places:
        shown = shown.quantize(Decimal(1).scaleb(-places))  # appends zeros, nothing else
    return f"{shown:,f} {currency}"


def format_date(moment: datetime) -> str:
    """``1 Oct 2026``: the UTC date of ``moment``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def usage_counted(doc: InvoiceDocument) -> str:
    """What the close barrier proved: the whole period, or every event accepted before a
    moment (a period closed on demand before its end)."""
    through = doc.complete_through
    if through is None:
        return ""
    if through >= doc.period_end:
        return "the whole period"
    return f"to {through.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def billing_period(doc: InvoiceDocument) -> str:
    """``1 Oct 2026 - 31 Oct 2026`` with an en dash; the period ends at midnight, exclusive."""
    last_day = doc.period_end - timedelta(days=1)
    return f"{format_date(doc.period_start)} \u2013 {format_date(last_day)}"


def tier_text(tier: TierCharge, currency: str, only: bool) -> str:
    """``Tier 2: 9,000 x 0.008 + 5.00 EUR flat fee``; without "Tier 1:" when it is the
    meter's only tier (per unit and package prices have one)."""
    units, price = format_decimal(tier.quantity), format_decimal(tier.unit_price)
    priced = tier.amount - tier.flat_fee
    if tier.quantity * tier.unit_price == priced:
        text = f"{units} x {price}"
    elif tier.unit_price and (priced / tier.unit_price) % 1 == 0:
        # A package price: TierCharge holds the units and the price of a package but not
        # the package size, so the number of packages is read back from the amount.
        text = f"{units} units, {format_decimal(priced / tier.unit_price)} packages x {price}"
    else:
        text = f"{units} units"
    if tier.flat_fee:
        text += f" + {format_money(tier.flat_fee, currency)} flat fee"
    return text if only and tier.tier == 1 else f"Tier {tier.tier}: {text}"


def tax_label(rate: Decimal) -> str:
    return f"Tax ({format_decimal(rate)}%)"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _party_lines(party: Party) -> list[str]:
    lines = list(party.address)
    if party.email:
        lines.append(party.email)
    if party.tax_id:
        lines.append(f"Tax ID: {party.tax_id}")
    return lines


# ---- layout ---------------------------------------------------------------------------


class _Page:
    """What goes on one page, in painting order within each kind."""

    __slots__ = ("bands", "rules", "texts")

    def __init__(self) -> None:
        self.bands: list[tuple[float, float, float, float]] = []  # x, y, w, h
        self.rules: list[tuple[float, float, float]] = []  # x1, x2, y
        self.texts: list[tuple[Font, float, float, str]] = []  # font, x, baseline, text


class _Row:
    """A line's first row (wrapped description, quantity, details, amount) or a tier row."""

    __slots__ = ("amount", "details", "height", "lines", "quantity", "tier")

    def __init__(self, lines: list[str], quantity: str, details: str, amount: str,
                 tier: bool) -> None:
        self.lines, self.quantity, self.details = lines, quantity, details
        self.amount, self.tier = amount, tier
        self.height = (TIER_LINE if tier else ROW_LINE) * len(lines)


class _Layout:
    def __init__(self, doc: InvoiceDocument) -> None:
        self.doc = doc
        self.pages: list[_Page] = []
        self.page = _Page()
        self.y = 0.0
        self.table_top = 0.0

    def text(self, font: Font, x: float, y: float, text: str, align: str = "L") -> None:
        """Place ``text`` (any string) left-aligned at x, or ending (R) or centred (C) on x."""
        safe = pdf_text(text)
        if align == "R":
            x -= text_width(safe, font)
        elif align == "C":
            x -= text_width(safe, font) / 2
        self.page.texts.append((font, x, y, safe))

    def lines(self, font: Font, x: float, y: float, text: str, width: float, step: float,
              limit: int = 2) -> float:
        """``text`` wrapped to ``width`` from baseline y on; the baseline after it."""
        for line in wrap(pdf_text(text), width, font, limit):
            self.page.texts.append((font, x, y, line))
            y += step
        return y

    def new_page(self) -> None:
        self.page = _Page()
        self.pages.append(self.page)
        if len(self.pages) > 1:
            number = self.doc.number or "draft"
            heading = f"{self.doc.seller.name} - invoice {number}, continued"
            self.y = self.lines(CONTINUED, LEFT, 16, heading, RIGHT - LEFT, 4.4, 1) + 3.6

    # -- first page --

    def header(self) -> None:
        doc = self.doc
        y = self.lines(SELLER_NAME, LEFT, 22, doc.seller.name, 105, 7)
        for line in _party_lines(doc.seller):
            y = self.lines(ADDRESS, LEFT, y, line, 105, 4.2)
        self.text(TITLE, RIGHT, 22, "INVOICE" if doc.number else "DRAFT INVOICE", "R")
        right_y = 22.0
        if doc.number:
            right_y = 29
            self.text(NUMBER, RIGHT, right_y, doc.number, "R")
        if doc.status == "void":
            right_y += 12
            self.text(VOID_MARK, RIGHT, right_y, "VOID", "R")
        self.y = max(y, right_y) + 8

    def parties(self) -> None:
        doc, top = self.doc, self.y
        self.text(SECTION, LEFT, top, "BILL TO")
        y = self.lines(BUYER_NAME, LEFT, top + 5.5, doc.buyer.name, 85, 4.8, 3)
        for line in _party_lines(doc.buyer):
            y = self.lines(BODY, LEFT, y, line, 85, 4.4)

        self.text(SECTION, COLUMN_X, top, "INVOICE DETAILS")
        details = (
            ("Invoice number", doc.number or "Draft, not numbered yet"),
            ("Issue date", format_date(doc.issued_at)),
            ("Due date", format_date(doc.due_at)),
            ("Billing period", billing_period(doc)),
            ("Plan", f"{doc.plan} (version {doc.plan_version})"),
            ("Invoice ID", doc.id),
            *((("Usage counted", usage_counted(doc)),) if doc.complete_through else ()),
        )
        right_y = top + 5.5
        for label, value in details:
            self.text(LABEL, COLUMN_X, right_y, label)
            right_y = self.lines(BODY, DETAIL_VALUE_X, right_y, value, RIGHT - DETAIL_VALUE_X,
                                 4.4)
        self.y = max(y, right_y) + 6

    # -- line items --

    def table_header(self) -> None:
        y = self.y
        self.page.bands.append((LEFT, y, RIGHT - LEFT, HEAD_H))
        base = y + 4.7
        self.text(TABLE_HEAD, DESC_X, base, "Description")
        self.text(TABLE_HEAD, QTY_R, base, "Quantity", "R")
        self.text(TABLE_HEAD, DETAIL_X, base, "Details")
        self.text(TABLE_HEAD, AMOUNT_R, base, "Amount", "R")
        self.y = self.table_top = y + HEAD_H

    def continue_table(self) -> None:
        self.new_page()
        self.table_header()

    def line_rows(self, line: InvoiceLine) -> list[_Row]:
        currency = self.doc.currency
        quantity = "" if line.quantity is None else format_decimal(line.quantity)
        details = f"{format_decimal(line.included)} included" if line.included else ""
        rows = [_Row(wrap(pdf_text(line.description), DESC_W, BODY, 4), quantity, details,
                     format_money(line.amount.amount, currency), tier=False)]
        only = len(line.tiers) == 1
        for tier in line.tiers:
            text = pdf_text(tier_text(tier, currency, only))
            rows.append(_Row(wrap(text, TIER_W, TIER_ROW, 2), "", "",
                             format_money(tier.amount, currency), tier=True))
        return rows

    def draw_rows(self, rows: Sequence[_Row]) -> None:
        y = self.y + ROW_PAD
        for row in rows:
            if y + row.height + ROW_PAD > BODY_BOTTOM and y > self.table_top + ROW_PAD:
                # Only a line with more tier rows than a page holds is split (see items).
                self.continue_table()
                y = self.y + ROW_PAD
            font = TIER_ROW if row.tier else BODY
            first = y + (2.9 if row.tier else 3.2)
            step = TIER_LINE if row.tier else ROW_LINE
            x = TIER_X if row.tier else DESC_X
            for index, text in enumerate(row.lines):
                self.page.texts.append((font, x, first + index * step, text))
            if row.quantity:
                self.text(font, QTY_R, first, row.quantity, "R")
            if row.details:
                self.text(font, DETAIL_X, first, row.details)
            self.text(font, AMOUNT_R, first, row.amount, "R")
            y += row.height
        self.y = y + ROW_PAD
        self.page.rules.append((LEFT, RIGHT, self.y))

    def items(self) -> None:
        self.table_header()
        for line in self.doc.lines:
            rows = self.line_rows(line)
            height = sum(row.height for row in rows) + 2 * ROW_PAD
            if self.y + height > BODY_BOTTOM and self.y > self.table_top:
                self.continue_table()  # a line and its tier rows move together
            self.draw_rows(rows)

    # -- totals --

    def totals(self) -> None:
        doc = self.doc
        currency = doc.currency
        rows: list[tuple[Font, Font, str, str]] = [
            (TOTAL_LABEL, BODY, "Subtotal", format_money(doc.subtotal.amount, currency))]
        if doc.tax_rate is not None:
            rows.append((TOTAL_LABEL, BODY, tax_label(doc.tax_rate),
                         format_money(doc.tax.amount, currency)))
        rows.append((TOTAL, TOTAL, "Total", format_money(doc.total.amount, currency)))
        for credit in doc.credits:
            rows.append((TOTAL_LABEL, BODY, credit.description,
                         f"-{format_money(credit.amount.amount, currency)}"))
        wrapped = [(label_font, amount_font,
                    wrap(pdf_text(label), TOTALS_LABEL_W, label_font, 3), amount)
                   for label_font, amount_font, label, amount in rows]
        height = 8 + sum(TOTALS_LINE * len(lines) for _, _, lines, _ in wrapped) + 1.5 + 11
        if doc.credit_balance.amount:
            height += 6
        if self.y + height > BODY_BOTTOM:
            self.new_page()
        y = self.y + 8
        for label_font, amount_font, lines, amount in wrapped:
            if label_font is TOTAL:
                y += 1.5
                self.page.rules.append((COLUMN_X, RIGHT, y - 4.2))
            for index, line in enumerate(lines):
                self.page.texts.append((label_font, COLUMN_X, y + index * TOTALS_LINE, line))
            self.text(amount_font, AMOUNT_R, y, amount, "R")
            y += TOTALS_LINE * len(lines)
        self.page.bands.append((COLUMN_X - PAD, y - 2.5, RIGHT - COLUMN_X + PAD, 9))
        self.text(AMOUNT_DUE, COLUMN_X, y + 3.5, "Amount due")
        self.text(AMOUNT_DUE, AMOUNT_R, y + 3.5, format_money(doc.amount_due.amount, currency),
                  "R")
        y += 11
        if doc.credit_balance.amount:
            self.text(NOTE, COLUMN_X, y + 2, "Credit balance remaining")
            self.text(NOTE, AMOUNT_R, y + 2, format_money(doc.credit_balance.amount, currency),
                      "R")
            y += 6
        self.y = y

    def gaps(self) -> None:
        """Producers with missing sequence numbers at close: the usage may be short."""
        if not self.doc.open_gaps:
            return
        lines = [pdf_text("Producer sequence gaps at close: usage from these sources may be "
                          "incomplete, and arrives as late usage once the events do.")]
        for gap in self.doc.open_gaps:
            shown = ", ".join(str(a) if a == b else f"{a}\u2013{b}" for a, b in gap.ranges)
            more = gap.range_count - len(gap.ranges)
            lines.append(pdf_text(
                f"{gap.source}: {gap.missing} missing ({shown}"
                f"{f' and {more} more ranges' if more > 0 else ''})"))
        wrapped = [row for line in lines for row in wrap(line, RIGHT - LEFT, NOTE, 4)]
        height = 8 + 4.4 * len(wrapped)
        if self.y + height > BODY_BOTTOM:
            self.new_page()
        y = self.y + 8
        for row in wrapped:
            self.text(NOTE, LEFT, y, row)
            y += 4.4
        self.y = y

    def footers(self) -> None:
        doc = self.doc
        where = f"Invoice {doc.number}" if doc.number else "Draft invoice"
        left = f"{where}  \u00b7  Due {format_date(doc.due_at)}"
        for number, page in enumerate(self.pages, start=1):
            self.page = page
            page.rules.append((LEFT, RIGHT, PAGE_H - 16))
            self.text(FOOTER, LEFT, PAGE_H - 11, left)
            self.text(FOOTER, RIGHT, PAGE_H - 11, f"Page {number} of {len(self.pages)}", "R")

    def run(self) -> list[_Page]:
        self.new_page()
        self.header()
        self.parties()
        self.items()
        self.totals()
        self.gaps()
        self.footers()
        return self.pages


# ---- painting -------------------------------------------------------------------------


def _paint(doc: InvoiceDocument, pages: Sequence[_Page]) -> bytes:
    pdf = FPDF(unit="mm", format="A4")
    pdf.core_fonts_encoding = ENCODING
    pdf.set_auto_page_break(False)  # the layout has placed everything already
    # zlib's output is not fixed across zlib builds (zlib-ng, distribution patches), so
    # compressed streams could change the bytes of a re-render on another machine. A page
    # of text is about 6 KiB uncompressed (2.5 compressed), and rendering is 10 % faster.
    pdf.set_compression(False)
    pdf.set_creation_date(_utc(doc.issued_at))
    title = f"Invoice {doc.number}" if doc.number else f"Draft invoice {doc.id}"
    pdf.set_title(title)
    pdf.set_author(doc.seller.name)
    pdf.set_subject(f"{title} to {doc.buyer.name} for {doc.period}")
    pdf.set_creator("Meterly")
    pdf.set_lang("en")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(*RULE)
    void = doc.status == "void"
    for page in pages:
        pdf.add_page()
        if void:
            pdf.set_font("Helvetica", WATERMARK[0], WATERMARK[1])
            pdf.set_text_color(*WATERMARK[2])
            x = PAGE_W / 2 - text_width("VOID", WATERMARK) / 2
            with pdf.rotation(angle=35, x=PAGE_W / 2, y=PAGE_H / 2):
                pdf.text(x, PAGE_H / 2 + 15, "VOID")
        if page.bands:
            pdf.set_fill_color(*BAND)
            for x, y, w, h in page.bands:
                pdf.rect(x, y, w, h, style="F")
        for x1, x2, y in page.rules:
            pdf.line(x1, y, x2, y)
        face: tuple[str, float] | None = None
        paint: Colour | None = None
        for (style, size, colour), x, y, text in page.texts:
            if (style, size) != face:
                pdf.set_font("Helvetica", style, size)
                face = (style, size)
            if colour != paint:
                pdf.set_text_color(*colour)
                # Text is painted with the fill colour; when it equals the text colour,
                # fpdf2 does not wrap every string in a colour change of its own.
                pdf.set_fill_color(*colour)
                paint = colour
            pdf.text(x, y, text)
    return bytes(pdf.output())


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice as an A4 PDF; the same document always gives the same bytes."""
    return _paint(doc, _Layout(doc).run())

"""Invoice PDF rendering speed on one core, against a minimal fpdf2 document.

    python -m ops.bench.pdf_render [--invoices 5000]

Composes ``--invoices`` typical invoices first (distinct tenants and numbers; 5 or 6 lines,
two of them with 2-3 tiers, tax, a credit on every third, a late-usage adjustment on every
fourth), then, in this one process and on the same machine:
- baseline: a one-page fpdf2 document with one line of text, rendered as many times;
- ``render_invoice_pdf`` on every invoice: invoices/s over CPU time (one core: rendering is
  single-threaded Python) and over wall time, and a check that re-rendering gives the same
  bytes. Composition is not timed.
Target: at least 500 invoices/s on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from fpdf import FPDF

from processors.billing.core.invoice import (
    BillingParty,
    Credit,
    InvoiceDocument,
    LateUsage,
    Party,
    PlanAssignment,
    compose_invoice,
    format_number,
    period_charge,
)
from processors.billing.core.invoice_pdf import render_invoice_pdf
from processors.billing.core.money import Money
from processors.billing.core.pricing import Graduated, MeterPrice, Package, PerUnit, Plan, Tier

TARGET = 500.0
D = Decimal
PLAN = Plan("Growth", 3, "EUR", {
    "api_calls": MeterPrice(Graduated((Tier(D(10_000), D("0.002")),
                                       Tier(D(1_000_000), D("0.0015"), D(5)),
                                       Tier(None, D("0.001")))), included=D(1_000)),
    "egress_gb": MeterPrice(Graduated((Tier(D(100), D("0.09")), Tier(None, D("0.05"))))),
    "storage_gb": MeterPrice(PerUnit(D("0.023"))),
    "exports": MeterPrice(Package(D(100), D("2.50"))),
}, flat_fee=D("49.00"))
SELLER = Party("Meterly GmbH", ("Torstrasse 1", "10119 Berlin", "Germany"),
               "billing@meterly.example", "DE123456789")
ISSUED = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


def typical_invoices(count: int) -> list[InvoiceDocument]:
    docs = []
    assignment = [PlanAssignment(datetime(2026, 1, 1, tzinfo=UTC), PLAN)]
    for n in range(count):
        buyer = Party(f"Customer {n:05d} Ltd", (f"{n} Market Street", "London EC1A 1AA"),
                      f"billing+{n}@customer.example", f"GB{100_000_000 + n}")
        party = BillingParty(f"tenant-{n:05d}", "EUR", buyer, tax_rate=D(19))
        usage = {"api_calls": D(20_000 + n * 7_919 % 2_000_000),
                 "egress_gb": D(50 + n % 400), "storage_gb": D(f"{n % 900}.5"),
                 "exports": D(n % 1_000)}
        billed = {"api_calls": D(50_000)}
        late = [LateUsage("2026-09", assignment, billed, {"api_calls": D(50_000 + n)},
                          period_charge("2026-09", assignment, billed, "EUR"))
                ] if n % 4 == 0 else []
        credits = [Credit(f"cr-{n}", "grant", "Prepaid credit", Money(D(100), "EUR"),
                          datetime(2026, 2, 1, tzinfo=UTC))] if n % 3 == 0 else []
        doc = compose_invoice(party, SELLER, "2026-10", assignment, usage, ISSUED, late=late,
                              credits=credits)
        assert doc is not None
        docs.append(replace(doc, status="finalized", number=format_number("MTR", 2026, n + 1)))
    return docs


def minimal_pdf() -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Invoice MTR-2026-000001: 1,234.50 EUR")
    return bytes(pdf.output())


def timed(count: int, work: Callable[[int], object]) -> tuple[float, float]:
    """CPU and wall seconds of ``work(i)`` for i in range(count)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(count):
        work(index)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=5_000)
    args = parser.parse_args()
    count = args.invoices
    begun = time.perf_counter()
    docs = typical_invoices(count)
    lines = sum(len(doc.lines) for doc in docs) / count
    tiered = sum(sum(1 for line in doc.lines if len(line.tiers) > 1) for doc in docs) / count
    print(f"composed {count:,} invoices in {time.perf_counter() - begun:.1f} s (not timed): "
          f"{lines:.1f} lines, {tiered:.1f} of them with 2-3 tiers, on average")

    for index in range(min(200, count)):  # warm-up: imports, caches, allocator
        minimal_pdf()
        render_invoice_pdf(docs[index])

    base_cpu, base_wall = timed(count, lambda _: minimal_pdf())
    sizes: list[int] = []
    inv_cpu, inv_wall = timed(count, lambda i: sizes.append(len(render_invoice_pdf(docs[i]))))

    base_rate, rate = count / base_cpu, count / inv_cpu
    print(f"baseline, one-line fpdf2 page: {base_rate:,.0f}/s CPU, {count / base_wall:,.0f}/s "
          f"wall ({1e6 * base_cpu / count:.0f} us each)")
    print(f"invoices: {rate:,.0f}/s CPU, {count / inv_wall:,.0f}/s wall "
          f"({1e3 * inv_cpu / count:.2f} ms each, {sum(sizes) / count / 1024:.1f} KiB "
          f"average PDF) -> {rate / base_rate:.2f} of baseline")
    print(f"target: >= {TARGET:.0f} invoices/s on one core -> "
          f"{'met' if rate >= TARGET else 'NOT met'}")
    print(f"deterministic: {'yes' if same_bytes(docs[:50]) else 'NO'} "
          "(re-rendered 50 invoices, compared SHA-256)")


def same_bytes(docs: Sequence[InvoiceDocument]) -> bool:
    first = [hashlib.sha256(render_invoice_pdf(doc)).hexdigest() for doc in docs]
    return first == [hashlib.sha256(render_invoice_pdf(doc)).hexdigest() for doc in docs]


if __name__ == "__main__":
    main()

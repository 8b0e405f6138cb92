"""Billing end to end: plans, usage, period close on an injected clock, invoices, PDFs.

Real gateway, counting, mirror, admin, billing and renderer processes on the real Kafka
broker and Cassandra node. Time is moved by writing the billing workers' clock file
(``METERLY_CLOCK_FILE``), never by waiting for a month to pass. Expected amounts are worked
out by hand in the test from the plan's prices, independently of the pricing code.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from tests.stack import (
    BILLING_WORKERS,
    CORE_WORKERS,
    Stack,
    env_without_meterly,
    start_stack,
    wait_for_usage,
    wait_until,
)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PRO = {
    "name": "pro", "currency": "EUR", "flat_fee": "49.00",
    "prices": {
        "api.calls": {"model": "graduated", "included": "100", "tiers": [
            {"up_to": "1000", "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.005"}]},
        "tokens": {"model": "per_unit", "unit_price": "0.2"},
    },
}
CAPPED = {
    "name": "capped", "currency": "EUR",
    "prices": {"search": {"model": "per_unit", "unit_price": "0.01", "limit": "5"},
               "lookup": {"model": "per_unit", "unit_price": "0.01"}},
}


@pytest.fixture(scope="module")
def stack(settings: Settings, clock: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("billing"), gateways=2,
            workers=CORE_WORKERS + BILLING_WORKERS,
            extra_env={"METERLY_CLOCK_FILE": str(clock), "METERLY_BILLING_TICK_SECONDS": "0.5",
                       "METERLY_INVOICE_PREFIX": "E2E", "METERLY_ISSUER_NAME": "Meterly Test Ltd",
                       "METERLY_ISSUER_ADDRESS": "1 Ledger Lane|Dublin"}) as running:
        with running.client() as admin:
            for plan in (PRO, CAPPED):
                made = admin.post("/v1/admin/plans", json=plan)
                assert made.status_code == 201, made.text
        yield running


def _set_clock(clock: Path, moment: datetime) -> None:
    clock.write_text(moment.isoformat())


def _closes_at(period: str) -> datetime:
    """One second after ``period``'s end plus the default hour of grace and the default
    15 s the close settles for (the gateways' delivery timeout, clock skew)."""
    return period_bounds(period)[1] + timedelta(hours=1, seconds=16)


def _events(meter: str, n: int, quantity: str = "1") -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": "e2e", "type": meter,
             "time": now, "data": {"quantity": quantity}} for _ in range(n)]


def _send(stack: Stack, key: str, events: list[dict[str, Any]]) -> None:
    with stack.client(token=key) as client:
        for start in range(0, len(events), 1000):
            r = client.post("/v1/events", json=events[start:start + 1000])
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(events[start:start + 1000])


def _until(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    return wait_until(what, probe, timeout)


def _invoice(stack: Stack, key: str, period: str, with_pdf: bool = True) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        with stack.client(token=key) as client:
            for inv in client.get("/v1/invoices").json():
                if inv["period"] == period and inv["status"] != "draft" and (
                        inv["pdf_url"] or not with_pdf):
                    return dict(inv)
        return None

    found: dict[str, Any] = _until(f"the {period} invoice", probe)
    return found


def _money(inv: dict[str, Any], name: str) -> Decimal:
    assert inv[name]["currency"] == "EUR"
    return Decimal(inv[name]["amount"])


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


#: Where in the period the tests' subscriptions start: ten days and six hours after its
#: start, whatever the day the suite runs (before now or after: usage is priced at the plan
#: in force at the period's end, the flat fee for the share it was in force).
SUBSCRIBED_AFTER = timedelta(days=10, hours=6)


def _subscribe(stack: Stack, name: str, plan: str = "pro", **extra: Any) -> tuple[str, str]:
    """A tenant on ``plan`` from SUBSCRIBED_AFTER into the current period."""
    tenant, key = stack.new_tenant(name, **extra)
    start = period_bounds(period_of(datetime.now(UTC)))[0]
    with stack.client() as admin:
        put = admin.put(f"/v1/admin/tenants/{tenant}/plan", json={
            "plan": plan, "effective_from": (start + SUBSCRIBED_AFTER).isoformat()})
        assert put.status_code == 200, put.text
    return tenant, key


def _prorated_fee(period: str, fee: str = "49.00") -> Decimal:
    """By hand: the fee for the seconds from SUBSCRIBED_AFTER to the period's end, out of
    the period's seconds, half-up to the cent."""
    start, end = period_bounds(period)
    part = int((end - start - SUBSCRIBED_AFTER).total_seconds())
    return _half_up(Decimal(fee) * part / int((end - start).total_seconds()))


def _numbered(stack: Stack, series: str) -> dict[str, int]:
    """Every invoice number of ``series`` this stack's tenants hold: invoice id -> number."""
    numbers: dict[str, int] = {}
    with stack.client() as admin:
        cursor = None
        while True:
            page = admin.get("/v1/admin/tenants", params={
                "limit": 500, **({"cursor": cursor} if cursor else {})}).json()
            for tenant in page["data"]:
                for inv in admin.get(f"/v1/admin/tenants/{tenant['id']}/invoices").json():
                    if inv["number"] and _sequence(inv["number"])[0] == series:
                        numbers[inv["id"]] = _sequence(inv["number"])[1]
            cursor = page["next_cursor"]
            if not cursor:
                return numbers


def _sequence(number: str) -> tuple[str, int]:
    prefix, year, seq = number.split("-")
    return f"{prefix}-{year}", int(seq)


def test_period_close_invoices_pdf_late_usage_and_void(stack: Stack, clock: Path) -> None:
    period = period_of(datetime.now(UTC))
    acme, acme_key = _subscribe(
        stack, "Acme GmbH", tax_rate="19", billing_address=["Hauptstr. 1", "Berlin"])
    _quiet, quiet_key = _subscribe(stack, "Quiet Ltd")
    with stack.client() as admin:
        grant = admin.post(f"/v1/admin/tenants/{acme}/credits", json={
            "kind": "grant", "amount": "20.00", "currency": "EUR",
            "description": "Welcome credit"})
        assert grant.status_code == 201, grant.text
        assert grant.json()["remaining"] == "20.00"

    _send(stack, acme_key, _events("api.calls", 1234) + _events("tokens", 100, "0.125"))
    wait_for_usage(stack, acme_key, {"api.calls": (1234, "1234"), "tokens": (100, "12.500")})

    _set_clock(clock, _closes_at(period))
    first = _invoice(stack, acme_key, period)

    # By hand: 1234 - 100 included = 1134 billable; 1000 x 0.01 + 134 x 0.005 = 10.67.
    # tokens 12.5 x 0.2 = 2.50. The plan started 10 days 6 hours into the month, so the
    # 49.00 base fee is prorated by the second; 19 % tax on the subtotal, half-up to the cent.
    fee = _prorated_fee(period)
    assert Decimal("25.00") < fee < Decimal("34.00")  # 17.75 to 20.75 days of 28 to 31
    subtotal = Decimal("10.67") + Decimal("2.50") + fee
    tax = _half_up(subtotal * Decimal("0.19"))
    assert first["status"] == "finalized"
    assert _money(first, "subtotal") == subtotal
    assert _money(first, "tax") == tax
    assert _money(first, "total") == subtotal + tax
    assert _money(first, "credits_applied") == Decimal("20.00")
    assert _money(first, "amount_due") == subtotal + tax - Decimal("20.00")
    calls = next(line for line in first["lines"] if line["meter"] == "api.calls")
    assert [(t["quantity"], t["unit_price"]) for t in calls["tiers"]] == [
        ("1000", "0.01"), ("134", "0.005")]
    assert first["seller"]["name"] == "Meterly Test Ltd"
    assert first["buyer"]["address"] == ["Hauptstr. 1", "Berlin"]
    assert datetime.fromisoformat(first["due_at"]) - datetime.fromisoformat(
        first["issued_at"]) == timedelta(days=30)

    # The PDF: fetched through the expiring link, the stored SHA-256 matches, text checks.
    with stack.client(token=acme_key) as client:
        redirect = client.get(f"/v1/invoices/{first['id']}/pdf")
        assert redirect.status_code == 307
        pdf = httpx.get(redirect.headers["location"], timeout=30)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(pdf.content).hexdigest() == first["pdf_sha256"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "invoice-e2e.pdf").write_bytes(pdf.content)
    from io import BytesIO
    text = "\n".join(page.extract_text() for page in PdfReader(BytesIO(pdf.content)).pages)
    for expected in (first["number"], "Acme GmbH", "Meterly Test Ltd", "api.calls",
                     f"{subtotal + tax:,.2f}", "Welcome credit"):
        assert expected in text, (expected, text)
    tampered = redirect.headers["location"].replace("signature=", "signature=0")
    assert httpx.get(tampered, timeout=30).status_code == 403

    # Both tenants closed, and every invoice the close numbered (other tests' tenants too,
    # whatever order they ran in) holds 1..n without a gap.
    other = _invoice(stack, quiet_key, period)
    assert _money(other, "total") == _prorated_fee(period)
    series = f"E2E-{_closes_at(period).year}"
    numbered = _numbered(stack, series)
    assert sorted(numbered.values()) == list(range(1, len(numbered) + 1)), numbered
    assert {first["id"], other["id"]} <= numbered.keys()

    # Closing again (operator, on demand) numbers nothing new and changes no invoice; a
    # tenant closed afterwards gets the next number, so nothing was skipped.
    late_comer, late_key = _subscribe(stack, "Late Comer")
    with stack.client() as admin:
        again = admin.post("/v1/admin/billing/close", json={"period": period})
        assert again.status_code == 202, again.text
        assert late_comer in again.json()["invoices"]
    third = _invoice(stack, late_key, period)
    assert _sequence(third["number"]) == (series, len(numbered) + 1)
    assert _numbered(stack, series) == {**numbered, third["id"]: len(numbered) + 1}
    with stack.client(token=acme_key) as client:
        mine = [i for i in client.get("/v1/invoices").json() if i["period"] == period]
    assert len(mine) == 1
    assert mine[0]["number"] == first["number"]
    assert mine[0]["pdf_sha256"] == first["pdf_sha256"]

    # Late usage: counted after the close, billed as an adjustment on the next invoice.
    _send(stack, acme_key, _events("api.calls", 500))
    wait_for_usage(stack, acme_key, {"api.calls": (1734, "1734"), "tokens": (100, "12.500")})
    next_period = period_of(period_bounds(period)[1])
    _set_clock(clock, _closes_at(next_period))
    second = _invoice(stack, acme_key, next_period)
    adjustment = next(line for line in second["lines"] if line["kind"] == "adjustment")
    assert adjustment["period"] == period
    assert adjustment["meter"] == "api.calls"
    assert Decimal(adjustment["quantity"]) == 500
    # 1634 billable: 10 + 634 x 0.005 = 13.17; billed before: 10.67 -> 2.50 more.
    assert _money(adjustment, "amount") == Decimal("2.50")
    assert _money(second, "subtotal") == Decimal("49.00") + Decimal("2.50")
    assert _money(second, "credits_applied") == 0  # the grant was spent on the first one
    assert second["number"].startswith(f"E2E-{_closes_at(next_period).year}-")

    # Void; other tenants never see an invoice that is not theirs.
    with stack.client() as admin:
        voided = admin.post(f"/v1/admin/tenants/{acme}/invoices/{first['id']}/void")
        assert voided.status_code == 200, voided.text
        assert voided.json()["status"] == "void"
        assert voided.json()["number"] == first["number"]
        draft_void = admin.post(f"/v1/admin/tenants/{acme}/invoices/nope/void")
        assert draft_void.status_code == 404
        # The renderer turns invoice.voided into a VOID PDF beside the finalized one.
        void_doc = wait_until("the VOID PDF", lambda: (
            d := admin.get(f"/v1/admin/tenants/{acme}/invoices/{first['id']}").json()
        )["pdf_sha256"] not in (None, first["pdf_sha256"]) and d, timeout=60)
        assert void_doc["pdf_url"].split("?")[0].endswith(f"{first['id']}-void.pdf")
        void_pdf = httpx.get(void_doc["pdf_url"], timeout=30)
        assert hashlib.sha256(void_pdf.content).hexdigest() == void_doc["pdf_sha256"]
        void_text = "\n".join(p.extract_text() for p in PdfReader(BytesIO(void_pdf.content)).pages)
        assert "VOID" in void_text
        assert first["number"] in void_text
        assert "VOID" not in text  # the finalized PDF, read above, has no mark
        # The link handed out before the void no longer serves the unmarked PDF.
        stale = httpx.get(redirect.headers["location"], timeout=30)
        assert stale.status_code == 410, stale.text
        assert stale.json()["type"].endswith("/invoice-voided")
    with stack.client(token=quiet_key) as client:
        stranger = client.get(f"/v1/invoices/{first['id']}")
        assert stranger.status_code == 404
        assert stranger.headers["content-type"].startswith("application/problem+json")
        assert client.get(f"/v1/invoices/{first['id']}/pdf").status_code == 404
    with stack.client() as admin:
        credits = admin.get(f"/v1/admin/tenants/{acme}/credits").json()
        # Voiding the invoice that spent the grant gives the grant back.
        assert credits[0]["remaining"] == "20.00"


def test_hard_limit_refuses_usage_past_the_cap(stack: Stack) -> None:
    _tenant, key = stack.new_tenant("Capped Inc", plan="capped")
    with stack.client(token=key) as client:
        for _ in range(5):
            assert client.get("/v1/resources/search").status_code == 200
    wait_for_usage(stack, key, {"search": (5, "5")})
    # Gateway 0 may answer from counters it read up to a second ago (gateway.quotas
    # CACHE_SECONDS); gateway 1 has
    # read none of this tenant's yet, so its first check reads the five counted. Once the
    # key has reached it (a read that counts nothing), every check below goes there.
    wait_until("the key on gateway 1", lambda: httpx.get(
        f"{stack.gateways[1].url}/v1/usage", headers={"Authorization": f"Bearer {key}"},
        timeout=5).status_code == 200, timeout=30)
    with stack.client(1, token=key) as client:
        refused = client.get("/v1/resources/search")
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["type"].endswith("/quota-exceeded")
        assert (body["meter"], body["limit"]) == ("search", "5")
        assert body["period"] == period_of(datetime.now(UTC))
        assert int(refused.headers["retry-after"]) > 0
        batch = client.post("/v1/events", json=_events("search", 1) + _events("lookup", 1))
        assert batch.status_code == 429
        # Other meters are not capped; nothing already counted was lost.
        assert client.get("/v1/resources/lookup").status_code == 200
    wait_for_usage(stack, key, {"search": (5, "5"), "lookup": (1, "1")})


def test_plan_and_credit_input_errors(stack: Stack) -> None:
    tenant, _key = stack.new_tenant("Errors Inc")
    with stack.client() as admin:
        bad_tiers = {**PRO, "name": "bad", "prices": {"x": {"model": "graduated", "tiers": [
            {"up_to": "10", "unit_price": "1"}, {"up_to": "5", "unit_price": "1"}]}}}
        r = admin.post("/v1/admin/plans", json=bad_tiers)
        assert r.status_code == 422
        assert r.json()["type"].endswith("/invalid-plan")
        r = admin.post("/v1/admin/plans", json={**PRO, "name": "nope", "prices": {
            "x": {"model": "per_unit"}}})
        assert r.status_code == 422
        assert "unit_price" in r.json()["detail"]
        r = admin.put(f"/v1/admin/tenants/{tenant}/plan", json={"plan": "missing"})
        assert r.status_code == 422
        assert r.json()["type"].endswith("/unknown-plan")
        r = admin.post(f"/v1/admin/tenants/{tenant}/credits", json={
            "amount": "5", "currency": "USD", "description": "wrong currency"})
        assert r.status_code == 422
        assert r.json()["type"].endswith("/currency-mismatch")
        r = admin.post("/v1/admin/billing/close", json={"period": "2999-01"})
        assert r.status_code == 422
        # A plan of its own: a new version of "pro" would change the other tests' fees.
        v1 = admin.post("/v1/admin/plans", json={**PRO, "name": "versioned"})
        assert v1.status_code == 201, v1.text
        v2 = admin.post("/v1/admin/plans", json={**PRO, "name": "versioned",
                                                 "flat_fee": "59.00"})
        assert v2.status_code == 201
        assert v2.json()["version"] == 2
        v1 = admin.get("/v1/admin/plans/versioned/versions/1").json()
        assert v1["flat_fee"] == "49.00"


def test_cli_closes_a_period_on_demand(stack: Stack) -> None:
    tenant, key = _subscribe(stack, "Cli Corp")
    _send(stack, key, _events("tokens", 10, "1.5"))
    wait_for_usage(stack, key, {"tokens": (10, "15.0")})
    period = period_of(datetime.now(UTC))
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "billing", "close", period, "--tenant", tenant,
         "--url", stack.gateways[0].url, "--wait", "--timeout", "120"],
        env={**env_without_meterly(), "METERLY_ADMIN_TOKEN": stack.admin_token},
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "finalized 1/1" in done.stderr
    tenant_out, invoice, number, total = done.stdout.strip().split("\t")
    amount, currency = total.split(" ")
    with stack.client(token=key) as client:
        inv = client.get(f"/v1/invoices/{invoice}").json()
    assert (tenant_out, number, currency) == (tenant, inv["number"], "EUR")
    # tokens 15 x 0.2 = 3.00, plus the prorated base fee.
    assert Decimal(amount) == Decimal("3.00") + _prorated_fee(period)


def test_upcoming_invoice_previews_the_open_period(stack: Stack) -> None:
    tenant, key = stack.new_tenant("Preview Co", plan="pro")
    _send(stack, key, _events("api.calls", 250))
    wait_for_usage(stack, key, {"api.calls": (250, "250")})
    with stack.client(token=key) as client:
        preview = client.get("/v1/invoices/upcoming")
        assert preview.status_code == 200, preview.text
        body = preview.json()
    assert body["status"] == "draft"
    assert body["number"] is None
    assert body["period"] == period_of(datetime.now(UTC))
    calls = next(line for line in body["lines"] if line["meter"] == "api.calls")
    # 250 - 100 included = 150 x 0.01 = 1.50
    assert (calls["quantity"], calls["amount"]["amount"]) == ("250", "1.50")
    with stack.client() as admin:
        # Previews are never stored: the tenant still has no invoice.
        assert admin.get(f"/v1/admin/tenants/{tenant}/invoices").json() == []
        nobody, _ = stack.new_tenant("No Plan Co")
        missing = admin.get(f"/v1/admin/tenants/{nobody}/invoices/upcoming")
        assert missing.status_code == 404
        assert missing.json()["type"].endswith("/no-upcoming-invoice")

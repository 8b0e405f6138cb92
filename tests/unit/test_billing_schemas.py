"""Billing schemas: API plan specs to pricing plans, invoice JSON, admin records, and the
records-to-composition helpers. Expected values are written out by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from processors.billing import invoice_codec
from processors.billing.core.admin_records import (
    assignments_of,
    billing_party,
    credit_of,
    plan_of,
)
from processors.billing.core.invoice import (
    BillingParty,
    Credit,
    InvoiceDocument,
    LateUsage,
    OpenGap,
    Party,
    PlanAssignment,
    compose_invoice,
)
from processors.billing.core.money import Money
from processors.billing.core.plans import to_plan
from processors.billing.core.pricing import (
    Graduated,
    MeterPrice,
    Package,
    PerUnit,
    Plan,
    PlanError,
    Tier,
    Volume,
    price_usage,
)
from processors.tenants.core.subscriptions import assignment_at
from schemas import admin_v1
from schemas.admin_v1 import ApiKey, Assignment, CreditRecord, PlanVersion, Subscription, Tenant
from schemas.plans_v1 import PlanSpec

D = Decimal


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# ---- plans_v1 ------------------------------------------------------------------------------

TIERS_JSON = [
    {"up_to": "1000", "unit_price": "0.01"},
    {"up_to": "10000", "unit_price": "0.008", "flat_fee": "5"},
    {"up_to": None, "unit_price": "0.005"},
]
TIERS = (Tier(D(1000), D("0.01")), Tier(D(10000), D("0.008"), D(5)), Tier(None, D("0.005")))
SPEC_JSON: dict[str, Any] = {
    "name": "pro",
    "currency": "EUR",
    "description": "For growing teams",
    "flat_fee": "49",
    "minimum_spend": "60.50",
    "prices": {
        "api.calls": {"model": "graduated", "tiers": TIERS_JSON, "included": "500",
                      "limit": "1000000"},
        "search": {"model": "volume", "tiers": TIERS_JSON},
        "storage.gb": {"model": "per_unit", "unit_price": "0.25", "included": "10"},
        "exports": {"model": "package", "package_size": "100", "package_price": "2.50"},
    },
}


def spec(**changes: Any) -> PlanSpec:
    """SPEC_JSON with top-level keys replaced; ``price_<meter>=...`` replaces one price."""
    doc = {**SPEC_JSON, "prices": dict(SPEC_JSON["prices"])}
    for key, value in changes.items():
        if key.startswith("price_"):
            doc["prices"][key.removeprefix("price_")] = value
        else:
            doc[key] = value
    return PlanSpec.model_validate(doc)


def test_to_plan_translates_every_model_with_included_and_limit() -> None:
    assert to_plan(spec(), 7) == Plan("pro", 7, "EUR", {
        "api.calls": MeterPrice(Graduated(TIERS), included=D(500), limit=D(1000000)),
        "search": MeterPrice(Volume(TIERS)),
        "storage.gb": MeterPrice(PerUnit(D("0.25")), included=D(10)),
        "exports": MeterPrice(Package(D(100), D("2.50"))),
    }, flat_fee=D(49), minimum_spend=D("60.50"))


def test_translated_plan_prices_as_written() -> None:
    priced = price_usage(to_plan(spec(), 1), {
        "api.calls": D(1500),  # 1000 billable after 500 included: 1000 x 0.01 = 10.00
        "search": D(5000),  # volume tier 2: 5000 x 0.008 + 5 = 45.00
        "storage.gb": D(14),  # 4 billable x 0.25 = 1.00
        "exports": D(201),  # 3 started packages x 2.50 = 7.50
    })
    assert [(c.meter, c.amount) for c in priced.lines] == [
        ("api.calls", Money(D("10.00"), "EUR")), ("exports", Money(D("7.50"), "EUR")),
        ("search", Money(D("45.00"), "EUR")), ("storage.gb", Money(D("1.00"), "EUR"))]
    # 10 + 7.50 + 45 + 1 + 49 flat = 112.50 >= 60.50 minimum
    assert priced.subtotal == Money(D("112.50"), "EUR")


@pytest.mark.parametrize(("changes", "message"), [
    ({"price_m": {"model": "per_unit"}}, "m: a per_unit price needs unit_price"),
    ({"price_m": {"model": "package", "package_price": "1"}},
     "m: a package price needs package_size"),
    ({"price_m": {"model": "package", "package_size": "10"}},
     "m: a package price needs package_price"),
    ({"price_m": {"model": "graduated"}}, "m: a graduated price needs tiers"),
    ({"price_m": {"model": "volume", "tiers": [
        {"up_to": "100", "unit_price": "1"}, {"up_to": "100", "unit_price": "1"},
        {"up_to": None, "unit_price": "1"}]}},
     "m: tier bounds must be positive and strictly increasing"),
    ({"price_m": {"model": "graduated", "tiers": [
        {"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "1"},
        {"up_to": None, "unit_price": "1"}]}},
     "m: tier bounds must be positive and strictly increasing"),
    ({"price_m": {"model": "graduated", "tiers": [
        {"up_to": "100", "unit_price": "1"}, {"up_to": "200", "unit_price": "1"}]}},
     r"m: only the last tier is open-ended \(up_to null\)"),
    ({"price_m": {"model": "per_unit", "unit_price": "-0.01"}},
     "m: unit price must not be negative"),
    ({"price_m": {"model": "per_unit", "unit_price": "1", "included": "-1"}},
     "m: included quantity must not be negative"),
    ({"flat_fee": "-1"}, "flat_fee and minimum_spend must not be negative"),
    ({"minimum_spend": "-0.01"}, "flat_fee and minimum_spend must not be negative"),
    ({"price_api calls": {"model": "per_unit", "unit_price": "1"}},
     r"'api calls' is not a meter name \(letters, digits"),
    ({"price_-calls": {"model": "per_unit", "unit_price": "1"}}, "'-calls' is not a meter name"),
    ({"price_m": {"model": "per_unit", "unit_price": "1", "limit": "0"}},
     "m: a limit must be positive"),
    ({"price_m": {"model": "per_unit", "unit_price": "1", "limit": "-5"}},
     "m: a limit must be positive"),
])
def test_to_plan_refuses_with_a_message_naming_the_fix(changes: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(PlanError, match=message):
        to_plan(spec(**changes), 1)


def test_to_plan_refuses_an_unknown_currency() -> None:
    # Raised as CurrencyError (a ValueError, not a PlanError); the plans route catches both.
    with pytest.raises(ValueError, match="unsupported currency 'XXX'"):
        to_plan(spec(currency="XXX"), 1)


@pytest.mark.parametrize("doc", [
    {**SPEC_JSON, "colour": "blue"},
    {**SPEC_JSON, "prices": {"m": {"model": "per_unit", "unit_price": "1", "tier": []}}},
    {**SPEC_JSON, "prices": {"m": {"model": "graduated", "tiers": [
        {"up_to": None, "unit_price": "1", "discount": "5"}]}}},
    {**SPEC_JSON, "prices": {"m": {"model": "tiered"}}},
    {**SPEC_JSON, "name": "Pro Plan"},
    {**SPEC_JSON, "currency": "eur"},
    {**SPEC_JSON, "flat_fee": "NaN"},
])
def test_plan_spec_refuses_unknown_fields_and_malformed_values(doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PlanSpec.model_validate(doc)


# ---- invoice_v1 ------------------------------------------------------------------------------

SELLER = Party("Meterly GmbH", ("Hauptstr. 1", "10115 Berlin"), "billing@meterly.example",
               "DE123456789")
BUYER = Party("Acme Corp", ("1 Infinite Loop", "Cupertino"), "ap@acme.example", "US-99")
ISSUED = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
GRADUATED_PLAN = Plan("pro", 1, "EUR", {
    "api.calls": MeterPrice(Graduated(TIERS), included=D(500)),
    "events": MeterPrice(PerUnit(D("0.005"))),
}, flat_fee=D(49))


def composed() -> InvoiceDocument:
    """A November invoice with tiers, an October adjustment, 19 % tax and two credits."""
    doc = compose_invoice(
        BillingParty("acme", "EUR", BUYER, D(19), 14), SELLER, "2026-11",
        [PlanAssignment(utc(2026, 1, 1), GRADUATED_PLAN)],
        {"api.calls": D(12500), "events": D(697)}, ISSUED,
        # October billed 49.00 + 300 billable calls x 0.01 = 52.00
        late=[LateUsage("2026-10", [PlanAssignment(utc(2026, 1, 1), GRADUATED_PLAN)],
                        {"api.calls": D(800)}, {"api.calls": D(1600)}, D("52.00"))],
        credits=[Credit("g1", "grant", "Welcome credit", Money(D(25), "EUR"), utc(2026, 9, 1)),
                 Credit("cn1", "credit_note", "Outage", Money(D("1000.5"), "EUR"),
                        utc(2026, 11, 3), expires_at=utc(2027, 11, 3))])
    assert doc is not None
    return doc


def test_composed_example_is_what_the_round_trips_rely_on() -> None:
    doc = composed()
    # api.calls 97.00 (12000 billable over 3 tiers), events 697 x 0.005 = 3.485 -> 3.49,
    # fee 49.00, October: 1600 - 500 = 1100 -> 10 + 100 x 0.008 + 5 = 15.80 vs 800 -> 3.00,
    # adjustment 12.80 ; subtotal 162.29 ; tax 30.8351 -> 30.84 ; total 193.13
    assert [line.kind for line in doc.lines] == ["usage", "usage", "flat_fee", "adjustment"]
    assert doc.lines[3].amount == Money(D("12.80"), "EUR")
    assert doc.total == Money(D("193.13"), "EUR")
    # g1 25 then cn1 168.13 of 1000.5 -> 832.37 left
    assert [(c.credit_id, c.amount.amount, c.remaining.amount) for c in doc.credits] == [
        ("g1", D(25), D(0)), ("cn1", D("168.13"), D("832.37"))]
    assert doc.amount_due == Money(D("0.00"), "EUR")


def finalized(doc: InvoiceDocument) -> InvoiceDocument:
    return replace(doc, status="finalized", number="MTR-2026-000123",
                   finalized_at=datetime(2026, 12, 1, 2, 0, 3, 250000, tzinfo=UTC),
                   pdf_key="invoices/acme/2026-11.pdf", pdf_sha256="ab" * 32,
                   complete_through=datetime(2026, 11, 20, 8, 15, 2, 125000, tzinfo=UTC),
                   open_gaps=(OpenGap("exporter", 6, ((10, 14), (50, 50)), 2),))


@pytest.mark.parametrize("variant", ["draft", "finalized", "void"])
def test_invoice_round_trip_is_exact(variant: str) -> None:
    doc = composed()
    if variant != "draft":
        doc = finalized(doc)
    if variant == "void":
        doc = replace(doc, status="void", voided_at=utc(2026, 12, 9, 10, 30))
    decoded = invoice_codec.decode(invoice_codec.encode(doc))
    assert decoded == doc
    # Same digits, not just the same values (Decimal("12.80") == Decimal("12.8")).
    assert invoice_codec.to_dict(decoded) == invoice_codec.to_dict(doc)
    assert invoice_codec.decode(invoice_codec.encode(doc).decode()) == doc
    if variant != "draft":
        assert decoded.complete_through == datetime(2026, 11, 20, 8, 15, 2, 125000, tzinfo=UTC)


def _floats(node: Any) -> list[float]:
    if isinstance(node, float):
        return [node]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _floats(value)]
    if isinstance(node, list):
        return [f for value in node for f in _floats(value)]
    return []


def test_invoice_json_keeps_amounts_as_decimal_strings() -> None:
    raw = invoice_codec.encode(composed())
    assert b'"subtotal":{"amount":"162.29","currency":"EUR"}' in raw
    assert b'"tax":{"amount":"30.84","currency":"EUR"}' in raw
    assert b'"total":{"amount":"193.13","currency":"EUR"}' in raw
    assert b'"tax_rate":"19"' in raw
    assert b'"remaining":{"amount":"832.37","currency":"EUR"}' in raw
    assert b'"unit_price":"0.008"' in raw
    assert b'"amount":"3.485"' in raw  # the exact tier amount before rounding
    assert b'"period_start":"2026-11-01T00:00:00Z"' in raw
    assert b'"billed_usage":{"2026-11":{"api.calls":"12500","events":"697"},' \
           b'"2026-10":{"api.calls":"1600"}}' in raw
    assert _floats(orjson.loads(raw)) == []


def test_invoice_reader_ignores_unknown_fields() -> None:
    doc = finalized(composed())
    data = invoice_codec.to_dict(doc)
    data["payment_link"] = "https://pay.example/inv"
    data["lines"][0]["note"] = "new in a later writer"
    assert invoice_codec.decode(orjson.dumps(data)) == doc


@pytest.mark.parametrize("version", [2, 0, None])
def test_invoice_of_an_unknown_version_is_refused(version: int | None) -> None:
    data = invoice_codec.to_dict(composed())
    data["v"] = version
    with pytest.raises(ValueError, match=f"unsupported invoice document version {version!r}"):
        invoice_codec.decode(orjson.dumps(data))


def test_invoice_without_a_required_time_is_refused() -> None:
    data = invoice_codec.to_dict(composed())
    data["issued_at"] = None
    with pytest.raises(ValueError, match="invoice document without issued_at"):
        invoice_codec.decode(orjson.dumps(data))


@pytest.mark.parametrize("kind", [invoice_codec.FINALIZED, invoice_codec.VOIDED])
def test_invoice_event_round_trip(kind: str) -> None:
    doc = finalized(composed())
    raw = invoice_codec.encode_event(kind, doc)
    assert raw.startswith(b'{"type":"' + kind.encode() + b'","invoice":{"v":1,')
    assert invoice_codec.decode_event(raw) == (kind, doc)


# ---- admin_v1 --------------------------------------------------------------------------------

TENANT = Tenant(
    id="acme", name="Acme Corp", billing_email="ap@acme.example", currency="EUR",
    status="active", created_at="2026-01-05T09:00:00.000Z",
    updated_at="2026-11-02T10:11:12.345Z", plan="pro",
    rate_limit_per_second=250, tax_rate="19", payment_terms_days=14,
    billing_address=("1 Infinite Loop", "Cupertino", "USA"))
PLAN_RECORD = PlanVersion("pro", 7, "2026-10-01T00:00:00.000Z", SPEC_JSON)
SUBSCRIPTION = Subscription("acme", (
    Assignment("starter", 1, "2026-01-05T09:00:00.000Z"),
    Assignment("pro", 7, "2026-11-16T00:00:00.000Z"),
), "2026-11-16T00:00:00.000Z")
CREDIT = CreditRecord("cr_1", "acme", "grant", "100.50", "EUR", "Prepaid pack",
                      "2026-10-01T00:00:00.000Z", expires_at="2027-10-01T00:00:00.000Z")
API_KEY = ApiKey("key_1", "acme", "ci", "mk_live_ab", "0f" * 32, "2026-01-05T09:00:00.000Z",
                 expires_at="2026-12-01T00:00:00.000Z")


@pytest.mark.parametrize(("entity", "kind", "key"), [
    (TENANT, "tenant", b"tenant:acme"),
    (replace(TENANT, billing_address=(), tax_rate=None, payment_terms_days=None), "tenant",
     b"tenant:acme"),
    (PLAN_RECORD, "plan", b"plan:pro:7"),
    (SUBSCRIPTION, "subscription", b"subscription:acme"),
    (CREDIT, "credit", b"credit:cr_1"),
    (replace(CREDIT, credit_kind="credit_note", expires_at=None), "credit", b"credit:cr_1"),
    (API_KEY, "api_key", b"key:key_1"),
])
def test_admin_record_round_trip(entity: admin_v1.AdminEntity, kind: str, key: bytes) -> None:
    raw = admin_v1.encode(entity)
    data = orjson.loads(raw)
    assert (data["v"], data["kind"]) == (1, kind)
    assert entity.record_key == key
    decoded = admin_v1.decode(raw)
    assert decoded == entity
    assert type(decoded) is type(entity)


def test_admin_tuples_come_back_as_tuples() -> None:
    tenant = admin_v1.decode(admin_v1.encode(TENANT))
    assert isinstance(tenant, Tenant)
    assert tenant.billing_address == ("1 Infinite Loop", "Cupertino", "USA")
    assert isinstance(tenant.billing_address, tuple)
    sub = admin_v1.decode(admin_v1.encode(SUBSCRIPTION))
    assert isinstance(sub, Subscription)
    assert isinstance(sub.assignments, tuple)
    assert sub.assignments[1] == Assignment("pro", 7, "2026-11-16T00:00:00.000Z")


def test_admin_record_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown admin record kind 'coupon'"):
        admin_v1.decode(orjson.dumps({"v": 1, "kind": "coupon", "id": "c1"}))


def test_admin_record_of_an_unknown_version_is_refused() -> None:
    data = orjson.loads(admin_v1.encode(TENANT))
    data["v"] = 2
    with pytest.raises(ValueError, match="unsupported admin record version"):
        admin_v1.decode(orjson.dumps(data))


# ---- billing_inputs --------------------------------------------------------------------------


def test_assignment_at_is_the_latest_started_at_or_before_the_instant() -> None:
    starter, pro = SUBSCRIPTION.assignments
    assert assignment_at(SUBSCRIPTION, utc(2026, 1, 5, 8, 59, 59)) is None
    assert assignment_at(SUBSCRIPTION, utc(2026, 1, 5, 9, 0)) == starter
    assert assignment_at(SUBSCRIPTION, utc(2026, 11, 15, 23, 59, 59)) == starter
    assert assignment_at(SUBSCRIPTION, utc(2026, 11, 16)) == pro
    assert assignment_at(SUBSCRIPTION, utc(2030, 1, 1)) == pro
    assert assignment_at(None, utc(2030, 1, 1)) is None


def test_assignment_at_does_not_rely_on_record_order_or_the_instant_s_zone() -> None:
    shuffled = replace(SUBSCRIPTION, assignments=SUBSCRIPTION.assignments[::-1])
    starter, pro = SUBSCRIPTION.assignments
    # 2026-11-16T00:30+01:00 is 2026-11-15T23:30Z: still starter
    cet = datetime(2026, 11, 16, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert assignment_at(shuffled, cet) == starter
    assert assignment_at(shuffled, utc(2026, 12, 1)) == pro


def test_records_become_composition_inputs() -> None:
    plans = {("pro", 7): PLAN_RECORD}  # starter v1 is unknown: left out
    assert assignments_of(SUBSCRIPTION, plans) == [
        PlanAssignment(utc(2026, 11, 16), to_plan(spec(), 7))]
    assert assignments_of(None, plans) == []
    assert plan_of(PLAN_RECORD) == to_plan(spec(), 7)
    assert billing_party(TENANT, 30) == BillingParty(
        "acme", "EUR", Party("Acme Corp", ("1 Infinite Loop", "Cupertino", "USA"),
                             "ap@acme.example"), D(19), 14)
    assert billing_party(replace(TENANT, tax_rate=None, payment_terms_days=None), 30) == \
        BillingParty("acme", "EUR", Party("Acme Corp", ("1 Infinite Loop", "Cupertino", "USA"),
                                          "ap@acme.example"), None, 30)
    assert credit_of(CREDIT) == Credit("cr_1", "grant", "Prepaid pack",
                                       Money(D("100.50"), "EUR"), utc(2026, 10, 1),
                                       utc(2027, 10, 1))

"""Invoice PDFs stored in S3 (S3Proxy, a real S3-compatible server) with their SHA-256.

The renderer's storing step (``render_and_store``) against the real Cassandra node and a
real S3 endpoint: the object's bytes hash to the SHA-256 recorded on the invoice, the
presigned link serves them, a second run stores nothing new, and a lost object is
re-rendered to the identical bytes.
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cassandra.cluster import Session
from pypdf import PdfReader

from processors.billing.core.invoice import BillingParty, Party, PlanAssignment, compose_invoice
from processors.billing.core.pricing import Graduated, MeterPrice, Plan, Tier
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.billing.renderer import pdf_key, render_and_store
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds
from storage.object_store import S3ObjectStore
from tests.infra import S3Endpoint

pytestmark = pytest.mark.integration

D = Decimal
PLAN = Plan("metered", 1, "USD", {"api.calls": MeterPrice(
    Graduated((Tier(D(1000), D("0.002")), Tier(None, D("0.001")))), D(100))}, flat_fee=D(25))


@pytest.fixture(scope="module")
def session(cassandra_session: Session) -> Session:
    return cassandra_session


@pytest.fixture
def s3(s3_endpoint: S3Endpoint) -> Iterator[tuple[S3ObjectStore, Any]]:
    """The store under test, and a plain boto3 client to tamper with the bucket."""
    bucket = f"meterly-invoices-{secrets.token_hex(4)}"
    store = S3ObjectStore(s3_endpoint.url, bucket, s3_endpoint.access_key,
                          s3_endpoint.secret_key, s3_endpoint.region)
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint.url, aws_access_key_id=s3_endpoint.access_key,
        aws_secret_access_key=s3_endpoint.secret_key, region_name=s3_endpoint.region,
        config=Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}))
    yield store, client
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def test_finalized_invoices_are_rendered_into_s3(
        settings: Settings, session: Session, s3: tuple[S3ObjectStore, Any]) -> None:
    objects, client = s3
    store = InvoiceStore(session, settings.cassandra_keyspace)
    start, _end = period_bounds("2026-10")
    issued = datetime(2026, 11, 1, 1, 0, 1, tzinfo=UTC)
    docs = []
    for i, calls in enumerate((0, 950, 12_345)):
        party = BillingParty(f"s3-{secrets.token_hex(4)}", "USD",
                             Party(f"Customer {i}", ("1 Road",), "ap@example.com"))
        doc = compose_invoice(party, Party("Meterly Inc."), "2026-10",
                              [PlanAssignment(start, PLAN)], {"api.calls": D(calls)}, issued)
        assert doc is not None
        docs.append(doc)
    refs = [(d.tenant_id, d.id) for d in store.save_drafts(docs)]
    # Drafts are not rendered: only finalized invoices get a PDF.
    assert render_and_store(store, objects, refs) == 0
    InvoiceNumbers(session, store, f"S{secrets.token_hex(3).upper()}").assign(refs, issued)

    assert render_and_store(store, objects, refs) == len(refs)
    for (tenant, inv_id), doc in zip(refs, store.get_many(refs), strict=True):
        assert doc is not None
        assert doc.pdf_key == pdf_key(tenant, inv_id)
        stored = objects.get(doc.pdf_key)
        assert hashlib.sha256(stored).hexdigest() == doc.pdf_sha256
        with urllib.request.urlopen(objects.link(doc.pdf_key, timedelta(minutes=5))) as answer:
            assert answer.read() == stored
        text = "".join(p.extract_text() for p in PdfReader(BytesIO(stored)).pages)
        assert doc.number is not None
        assert doc.number in text
        assert doc.buyer.name in text

    # Handled again (an at-least-once redelivery): nothing new is stored.
    assert render_and_store(store, objects, refs) == 0

    # An object lost from the bucket is rendered again, to the very same bytes.
    lost = store.get(*refs[2])
    assert lost is not None
    assert lost.pdf_key is not None
    client.delete_object(Bucket=objects.bucket, Key=lost.pdf_key)
    assert not objects.exists(lost.pdf_key)
    assert render_and_store(store, objects, [refs[2]]) == 1
    again = store.get(*refs[2])
    assert again is not None
    assert again.pdf_sha256 == lost.pdf_sha256

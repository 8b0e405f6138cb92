"""Invoice PDFs stored in S3 (S3Proxy, a real S3-compatible server) with their SHA-256.

The production path: a real ``meterly worker invoice-renderer`` process, configured with the
S3 object store, consumes ``invoice.finalized`` events from Kafka (the invoice travels in the
event, as the closer sends it) and runs its handler (``store_pdfs``) against the real
Cassandra node and the S3 endpoint. Checked: an event carrying a draft renders nothing; the
object's bytes hash to the SHA-256 recorded on the invoice and the presigned link serves
them; a redelivered batch (Faust is at least once) stores nothing new (the same keys, the
same bytes, the same recorded SHA-256); a lost object is rendered again, to the identical
bytes, when its event is delivered again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cassandra.cluster import Session
from pypdf import PdfReader

from ops.topics import ensure_topics
from processors.billing import invoice_codec
from processors.billing.core.invoice import (
    BillingParty,
    InvoiceDocument,
    Party,
    PlanAssignment,
    compose_invoice,
)
from processors.billing.core.pdf_keys import pdf_key
from processors.billing.core.pricing import Graduated, MeterPrice, Plan, Tier
from processors.billing.invoice_numbers import InvoiceNumbers
from processors.billing.invoice_store import InvoiceStore
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds
from schemas.topics import INVOICES
from storage.object_store import S3ObjectStore
from tests.infra import S3Endpoint
from tests.kafka_helpers import producer
from tests.stack import wait_until
from tests.usage_load import WorkerProcess, worker_env

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


def _bucket(client: Any, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket: key -> bytes."""
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _log_lines(log: Path, since: int) -> list[dict[str, Any]]:
    """The renderer's JSON log lines written after byte ``since``."""
    lines = []
    for raw in log.read_bytes()[since:].decode(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def _rendered(log: Path, since: int) -> int:
    return sum(int(line.get("rendered", 0)) for line in _log_lines(log, since)
               if line.get("msg") == "invoice PDFs stored")


def test_renderer_worker_stores_finalized_invoices_in_s3(
        settings: Settings, session: Session, s3: tuple[S3ObjectStore, Any],
        s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    objects, client = s3
    assert settings.kafka_bootstrap
    prefix = f"{settings.topic_prefix}p{secrets.token_hex(3)}."
    ensure_topics(settings.kafka_bootstrap, prefix, 1)
    topic = INVOICES.full_name(prefix)
    store = InvoiceStore(session, settings.cassandra_keyspace)
    start, _end = period_bounds("2026-10")
    issued = datetime(2026, 11, 1, 1, 0, 1, tzinfo=UTC)
    docs = []
    for i, calls in enumerate((0, 950, 12_345, 7)):
        party = BillingParty(f"s3-{secrets.token_hex(4)}", "USD",
                             Party(f"Customer {i}", ("1 Road",), "ap@example.com"))
        doc = compose_invoice(party, Party("Meterly Inc."), "2026-10",
                              [PlanAssignment(start, PLAN)], {"api.calls": D(calls)}, issued)
        assert doc is not None
        docs.append(doc)
    stored = store.save_drafts(docs)
    draft, finals = stored[3], stored[:3]
    refs = [(d.tenant_id, d.id) for d in finals]
    InvoiceNumbers(session, store, f"S{secrets.token_hex(3).upper()}").assign(refs, issued)
    numbered = [d for d in store.get_many(refs) if d is not None]
    assert [d.status for d in numbered] == ["finalized"] * 3
    assert draft.status == "draft"

    env = {**worker_env(settings.model_copy(update={"topic_prefix": prefix}),
                        tmp_path / "home", "1"),
           "METERLY_ADMIN_TOKEN": "x" * 32,
           "METERLY_OBJECT_STORE_URL": f"s3://{objects.bucket}",
           "METERLY_S3_ENDPOINT_URL": s3_endpoint.url,
           "METERLY_S3_REGION": s3_endpoint.region}
    if s3_endpoint.access_key is not None and s3_endpoint.secret_key is not None:
        env |= {"METERLY_S3_ACCESS_KEY": s3_endpoint.access_key,
                "METERLY_S3_SECRET_KEY": s3_endpoint.secret_key}
    renderer = WorkerProcess("invoice-renderer", env, tmp_path / "renderer.log")
    writer = producer(settings.kafka_bootstrap)

    def deliver(batch: list[InvoiceDocument]) -> None:
        # One partition for all: the renderer handles them in this order.
        for doc in batch:
            writer.produce(topic, invoice_codec.encode_event(invoice_codec.FINALIZED, doc),
                           key=doc.tenant_id.encode(), partition=0)
        assert writer.flush(30) == 0

    def recorded() -> list[InvoiceDocument]:
        return [d for d in store.get_many(refs) if d is not None and d.pdf_sha256]

    renderer.start()
    try:
        # The draft goes first, in the same partition: it was handled by the time the
        # finalized invoices behind it are recorded.
        deliver([draft, *numbered])
        wait_until("the three PDFs recorded", lambda: len(recorded()) == 3, timeout=120)
        after_first = renderer.log.stat().st_size
        assert _rendered(renderer.log, 0) == 3
        # Drafts are not rendered: the handler saw it, refused it, stored nothing for it.
        refused = [line for line in _log_lines(renderer.log, 0)
                   if line.get("msg") == "invoice event without a number not rendered"]
        assert [line["invoice"] for line in refused] == [draft.id]
        still_draft = store.get(draft.tenant_id, draft.id)
        assert still_draft is not None
        assert (still_draft.status, still_draft.pdf_key, still_draft.pdf_sha256) == (
            "draft", None, None)
        first = _bucket(client, objects.bucket)
        assert sorted(first) == sorted(pdf_key(t, i) for t, i in refs)

        for doc in recorded():
            assert doc.pdf_key == pdf_key(doc.tenant_id, doc.id)
            data = first[doc.pdf_key]
            assert hashlib.sha256(data).hexdigest() == doc.pdf_sha256
            with urllib.request.urlopen(objects.link(doc.pdf_key, timedelta(minutes=5))) as got:
                assert got.read() == data
            text = "".join(p.extract_text() for p in PdfReader(BytesIO(data)).pages)
            assert doc.number is not None
            assert doc.number in text
            assert doc.buyer.name in text
        shas = {d.id: d.pdf_sha256 for d in recorded()}

        # Delivered again (an at-least-once redelivery of the whole batch): handled (the
        # log says so), and nothing new is stored: the same keys, the same bytes, the same
        # SHA-256 on the invoices.
        deliver(numbered)
        wait_until("the redelivered batch handled",
                   lambda: _rendered(renderer.log, after_first) == 3, timeout=60)
        after_second = renderer.log.stat().st_size
        assert _bucket(client, objects.bucket) == first
        assert {d.id: d.pdf_sha256 for d in recorded()} == shas

        # An object lost from the bucket is rendered again, to the very same bytes, when
        # its invoice's event comes again.
        lost = numbered[2]
        key = pdf_key(lost.tenant_id, lost.id)
        client.delete_object(Bucket=objects.bucket, Key=key)
        assert not objects.exists(key)
        deliver([lost])
        wait_until("the lost PDF rendered again",
                   lambda: _rendered(renderer.log, after_second) == 1, timeout=60)
        assert _bucket(client, objects.bucket) == first
        assert {d.id: d.pdf_sha256 for d in recorded()} == shas
        assert renderer.restarts == 0, renderer.log.read_text()[-3000:]
    finally:
        renderer.stop()

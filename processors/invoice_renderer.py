"""The invoice renderer (Faust): each finalized invoice -> a PDF in the object store.

It consumes ``invoice.finalized`` from the invoices topic, re-reads the invoice from
Cassandra (the source of truth), renders it with fpdf2, stores it under
``invoices/<tenant>/<invoice id>.pdf`` and records the key and SHA-256 on the invoice.
Rendering is deterministic, so an event handled twice after a crash stores the same bytes
under the same key: at-least-once delivery is exactly enough.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import faust
from confluent_kafka import Producer
from prometheus_client import Counter

from ops.logs import faust_worker_logging
from ops.settings import Settings
from processors import invoice_messages
from processors.invoice import InvoiceDocument
from processors.invoice_pdf import render_invoice_pdf
from processors.transactions import exit_now
from schemas import invoice_v1, webhooks_v1
from schemas.topics import INVOICES, WEBHOOK_EVENTS
from storage.cassandra import connect
from storage.invoices import InvoiceStore
from storage.object_store import ObjectStore, open_object_store, put_all

log = logging.getLogger(__name__)
BATCH = 200
RENDERED = Counter("meterly_invoice_pdfs_rendered_total", "invoice PDFs rendered and stored")


def pdf_key(tenant_id: str, invoice_id: str) -> str:
    return f"invoices/{tenant_id}/{invoice_id}.pdf"


def render_and_store(store: InvoiceStore, objects: ObjectStore,
                     refs: Sequence[tuple[str, str]]) -> int:
    """Render and store the PDFs of the finalized invoices in ``refs`` that lack one."""
    docs = store.get_many(list(dict.fromkeys(refs)))
    return store_pdfs(store, objects, [
        d for d in docs if d is not None and d.number is not None and not (
            d.pdf_sha256 is not None and d.pdf_key and objects.exists(d.pdf_key))])


def announce(producer: Producer, topic: str, objects: ObjectStore,
             docs: Sequence[InvoiceDocument], stored: Sequence[tuple[str, str, str, str]]
             ) -> None:
    """invoice.finalized for each stored PDF, with an expiring link to it."""
    by_id = {d.id: d for d in docs}
    for _tenant, invoice, key, sha in stored:
        message = invoice_messages.finalized(
            by_id[invoice], objects.link(key, invoice_messages.PDF_LINK_TTL), sha)
        producer.produce(topic, webhooks_v1.encode_message(message),
                         key=message.tenant_id.encode())
        producer.poll(0)
    if producer.flush(30):
        raise RuntimeError("invoice.finalized messages not acknowledged by Kafka")


def store_pdfs(store: InvoiceStore, objects: ObjectStore, docs: Sequence[InvoiceDocument],
               producer: Producer | None = None, messages_topic: str = "") -> int:
    """Render ``docs``, store the PDFs, then record their keys and SHA-256 on the invoices
    and (with a producer) announce them as webhook messages."""
    stored, files = [], []
    for doc in docs:
        pdf = render_invoice_pdf(doc)
        key = pdf_key(doc.tenant_id, doc.id)
        files.append((key, pdf, "application/pdf"))
        stored.append((doc.tenant_id, doc.id, key, hashlib.sha256(pdf).hexdigest()))
    put_all(objects, files)
    # Recorded only once the objects are stored: a recorded PDF always exists.
    store.set_pdfs(stored)
    RENDERED.inc(len(stored))
    if producer is not None:
        # After the PDFs are recorded: the message's link always works. A crash before
        # this line renders again on redelivery and sends then.
        announce(producer, messages_topic, objects, docs, stored)
    return len(stored)


def build_app(settings: Settings, store: InvoiceStore, objects: ObjectStore,
              producer: Producer | None = None) -> faust.App:
    assert settings.kafka_bootstrap
    datadir = settings.home / "faust" / "invoice-renderer"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}invoice-renderer",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        processing_guarantee="at_least_once",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
    )
    messages_topic = WEBHOOK_EVENTS.full_name(settings.topic_prefix)
    topic = app.topic(INVOICES.full_name(settings.topic_prefix), key_type=bytes,
                      value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def render_invoices(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for values in stream.take(BATCH, within=0.5):
            try:
                # The event carries the finalized invoice, immutable once numbered: render
                # it as it is. A redelivered event renders the same bytes to the same key.
                docs = [doc for kind, doc in map(invoice_v1.decode_event, values)
                        if kind == invoice_v1.FINALIZED]
                # Cassandra, the object store and fpdf2 all block; Faust's loop stays free.
                count = await loop.run_in_executor(None, store_pdfs, store, objects, docs,
                                                   producer, messages_topic)
            except Exception:  # noqa: BLE001 - any failure means exit and restart
                exit_now()
            log.info("invoice PDFs stored", extra={"rendered": count})

    return app


def run_worker(settings: Settings) -> None:
    from gateway.app import link_secret
    from ops.admin_token import read_admin_token

    assert settings.cassandra_hosts
    cluster, session = connect(settings.cassandra_hosts)
    store = InvoiceStore(session, settings.cassandra_keyspace)
    objects = open_object_store(settings, settings.public_base_url,
                                link_secret(read_admin_token(settings)))
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"})
    worker = faust.Worker(build_app(settings, store, objects, producer), loglevel="INFO",
                          quiet=True,
                         logging_config=faust_worker_logging("worker:invoice-renderer"))
    try:
        worker.execute_from_commandline()
    finally:
        cluster.shutdown()

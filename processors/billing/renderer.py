"""The invoice renderer (Faust): each finalized or voided invoice -> a PDF in the object
store.

Protocol, per batch of invoices.v1 events (Faust, at least once):

1. Decode each event (an unreadable one is skipped, ``schemas.topics``). The event carries
   the invoice as it was numbered (``invoice.finalized``) or voided (``invoice.voided``);
   the renderer does not read it back from Cassandra. An invoice without a number (a
   draft) is never rendered.
2. Render each with fpdf2 (deterministic: the same invoice gives the same bytes).
3. Store the PDFs: ``invoices/<tenant>/<id>.pdf``, or ``<id>-void.pdf`` with the VOID
   watermark for a voided invoice (the finalized PDF stays as it was).
4. Record each key and SHA-256 on the invoice in Cassandra, only after step 3: a recorded
   PDF always exists.
5. For a finalized invoice, send ``invoice.finalized`` to the webhook-events topic with an
   expiring link (after step 4, so the link works).
6. Faust commits the batch's offsets.

A crash before step 6 redelivers the batch: steps 2 to 4 write the same bytes under the
same keys, and step 5 sends the same message id again, which receivers drop. So
at-least-once delivery is exactly enough.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from confluent_kafka import Producer
from prometheus_client import Counter

from processors.billing import invoice_codec
from processors.billing.core import messages
from processors.billing.core.invoice import InvoiceDocument
from processors.billing.core.invoice_pdf import render_invoice_pdf
from processors.billing.core.pdf_keys import pdf_key, void_pdf_key
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.faust_app import (
    bytes_topic,
    dead_letter_of,
    event_place,
    faust_app,
    header_cid,
    run_app,
)
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record
from processors.kafka.transactions import exit_now, idempotent_producer
from processors.runtime import keyring
from processors.runtime.settings import Settings
from schemas import webhooks_v1
from schemas.topics import INVOICES, WEBHOOK_EVENTS
from storage.cassandra import connect
from storage.object_store import ObjectStore, open_object_store, put_all

log = logging.getLogger(__name__)
BATCH = 200
RENDERED = Counter("meterly_invoice_pdfs_rendered_total", "invoice PDFs rendered and stored")


def announce(producer: Producer, topic: str, objects: ObjectStore,
             docs: Sequence[InvoiceDocument], stored: Sequence[tuple[str, str, str, str]],
             cids: Mapping[str, str]) -> None:
    """invoice.finalized for each stored PDF, with an expiring link to it."""
    by_id = {d.id: d for d in docs}
    for _tenant, invoice, key, sha in stored:
        message = messages.finalized(
            by_id[invoice], objects.link(key, messages.PDF_LINK_TTL), sha)
        cid = cids.get(invoice)
        producer.produce(topic, webhooks_v1.encode_message(message),
                         key=message.tenant_id.encode(),
                         headers=[("correlation-id", cid.encode())] if cid else None)
        producer.poll(0)
    if producer.flush(30):
        raise RuntimeError("invoice.finalized messages not acknowledged by Kafka")


def store_pdfs(store: InvoiceStore, objects: ObjectStore, docs: Sequence[InvoiceDocument],
               producer: Producer | None = None, messages_topic: str = "",
               cids: Mapping[str, str] | None = None) -> int:
    """Render ``docs``, store the PDFs, then record their keys and SHA-256 on the invoices
    and (with a producer) announce the finalized ones as webhook messages."""
    stored, files = [], []
    for doc in docs:
        pdf = render_invoice_pdf(doc)
        key = (void_pdf_key if doc.status == "void" else pdf_key)(doc.tenant_id, doc.id)
        files.append((key, pdf, "application/pdf"))
        stored.append((doc.tenant_id, doc.id, key, hashlib.sha256(pdf).hexdigest()))
    put_all(objects, files)
    # Recorded only once the objects are stored: a recorded PDF always exists.
    store.set_pdfs(stored)
    RENDERED.inc(len(stored))
    if producer is not None:
        # After the PDFs are recorded: the message's link always works. A crash before
        # this line renders again on redelivery and sends then.
        voided = {d.id for d in docs if d.status == "void"}
        announce(producer, messages_topic, objects, docs,
                 [s for s in stored if s[1] not in voided], cids or {})
    return len(stored)


def build_app(settings: Settings, store: InvoiceStore, objects: ObjectStore,
              producer: Producer | None = None) -> faust.App:
    app = faust_app(settings, "invoice-renderer")
    messages_topic = WEBHOOK_EVENTS.full_name(settings.topic_prefix)
    topic = bytes_topic(app, INVOICES.full_name(settings.topic_prefix))
    assert settings.kafka_bootstrap
    dead_letters = DeadLetters(settings.kafka_bootstrap, settings.topic_prefix,
                               "invoice-renderer")

    @app.agent(topic)
    async def render_invoices(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(BATCH, within=0.5):
            try:
                # The event carries the invoice, immutable once numbered: render it as it
                # is. A redelivered event renders the same bytes to the same key.
                latest: dict[str, InvoiceDocument] = {}
                cids: dict[str, str] = {}
                for event in events:
                    try:
                        kind, doc = invoice_codec.decode_event(event.value)
                    except DECODE_ERRORS as exc:
                        invalid_record(INVOICES, event_place(event), exc,
                                       dead_letter_of(dead_letters, event))
                        continue
                    if kind in (invoice_codec.FINALIZED, invoice_codec.VOIDED):
                        if doc.number is None:
                            # A draft is never rendered: only a numbered invoice has a
                            # PDF (the closer announces numbered invoices only).
                            log.warning("invoice event without a number not rendered",
                                        extra={"invoice": doc.id, "tenant": doc.tenant_id,
                                               "place": event_place(event)})
                            continue
                        # A voided invoice renders with the VOID mark, whichever event
                        # carried it (a re-sent invoice.finalized can carry one).
                        # The later event of an invoice wins (a void follows its finalize
                        # in the tenant's partition).
                        latest[doc.id] = doc
                        if (cid := header_cid(event)) is not None:
                            cids[doc.id] = cid
                # Kept before these events are acknowledged (and their offsets committed).
                await loop.run_in_executor(None, dead_letters.flush)
                # Cassandra, the object store and fpdf2 all block; Faust's loop stays free.
                count = await loop.run_in_executor(None, store_pdfs, store, objects,
                                                   list(latest.values()), producer,
                                                   messages_topic, cids)
            except Exception:  # noqa: BLE001 - any failure means exit and restart
                exit_now()
            log.info("invoice PDFs stored", extra={
                "rendered": count, "correlation_ids": sorted(set(cids.values()))})

    return app


def run_worker(settings: Settings) -> None:
    assert settings.cassandra_hosts
    cluster, session = connect(settings.cassandra_hosts, security=settings.cassandra_security)
    store = InvoiceStore(session, settings.cassandra_keyspace)
    objects = open_object_store(settings, settings.public_base_url,
                                keyring.load(settings, "links").current[1])
    assert settings.kafka_bootstrap
    producer = idempotent_producer(settings.kafka_bootstrap)
    try:
        run_app(build_app(settings, store, objects, producer), "invoice-renderer")
    finally:
        cluster.shutdown()

"""The ingest validator: CloudEvents from the Kafka ingest topic into the counting path.

Platform services write CloudEvents (Kafka protocol binding, tenant id as the record key,
an API key of that tenant in the ``meterly-key`` header) to ``ingest.cloudevents.v1``.
Protocol, per batch:

1. Judge each record the way the HTTP gateway does, before any transaction: a known,
   active tenant as the key (a tenant or API key not in the directory yet is waited for,
   once per batch and at most ``UNKNOWN_TENANT_WAIT`` seconds, until the admin records
   written before then are applied), a usable API key of that tenant (or the attestation a
   dead letter of a verified record carries: ``processors.usage.core.ingest_credentials``),
   a CloudEvent, and a time inside the acceptance window at the record's broker time (the
   topic keeps LogAppendTime), so a validator that lags past a period's close still takes
   what was written before it.
2. Begin a transaction (a stable transactional id per worker fences a dead predecessor).
3. Pack the valid events per tenant into ``usage.v1`` records.
4. Send every invalid record to ``ingest.dead-letter.v1`` as it came, but for its API key
   (replaced by an attestation, or by the key's prefix when it was not the tenant's), with
   the reason in a ``meterly-error`` header; ``meterly ingest dead-letter --replay`` writes
   them back to the ingest topic once fixed.
5. Add the consumed offsets to the transaction and commit it (``commit_or_rewind``).

A crash before 5 aborts the transaction: nothing of the batch is visible to the counter
(it reads committed records only) and the batch is read again, so a record is neither lost
nor repeated; the counter's deduplication handles a client's own resends.
"""

from __future__ import annotations

import logging
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Message

from processors.kafka.config import client_config
from processors.kafka.invalid import invalid_record, where
from processors.kafka.messages import data_messages
from processors.kafka.transactions import (
    commit_or_rewind,
    exit_for_restart,
    transactional_producer,
)
from processors.runtime import keyring
from processors.runtime.failpoints import failpoint
from processors.runtime.settings import Settings
from processors.tenants.core import keys
from processors.tenants.follower import follow_admin
from processors.usage.core import ingest_credentials as credentials
from processors.usage.core.meters import MeterCache, metered
from processors.usage.core.periods import AcceptanceWindow
from schemas import usage_v1
from schemas.admin_v1 import ApiKey
from schemas.cloudevents import EventRejected, to_usage_event
from schemas.cloudevents_kafka import record_to_event
from schemas.topics import ADMIN, INGEST, INGEST_DEAD_LETTER, INGEST_VALIDATOR_GROUP, USAGE
from schemas.usage_v1 import UsageEvent, UsageRecord

log = logging.getLogger(__name__)

MAX_EVENTS_PER_RECORD = 1000
#: How long a batch waits for the admin topic when a record names a tenant not yet known.
UNKNOWN_TENANT_WAIT = 10.0


class IngestValidator:
    def __init__(self, settings: Settings, worker_id: str) -> None:
        assert settings.kafka_bootstrap
        self.settings = settings
        prefix = settings.topic_prefix
        self.source = INGEST.full_name(prefix)
        self.usage = USAGE.full_name(prefix)
        self.dead_letter = INGEST_DEAD_LETTER.full_name(prefix)
        self.grace = timedelta(seconds=settings.grace_seconds)
        self.require_time = settings.require_event_time
        self._waited_for: str | None = None
        self._warned_create_time = False
        self._stop = False
        self.consumer = Consumer({
            **client_config(settings.kafka_bootstrap),
            "group.id": f"{prefix}{INGEST_VALIDATOR_GROUP}",
            "group.instance.id": f"ingest-validator-{worker_id}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
        })
        self.producer = transactional_producer(
            settings.kafka_bootstrap, f"{prefix}ingest-validator-{worker_id}",
            **{"message.max.bytes": 4 * 2**20},
        )
        # Tenants are known from the admin topic, as in the gateway; events for an unknown
        # tenant would never reach an invoice, so they go to the dead-letter topic.
        self.directory, self.admin_topic = follow_admin(settings.kafka_bootstrap,
                                                        ADMIN.full_name(prefix))
        self.record_keys = keyring.load(settings, "records")
        self.meter_cache = MeterCache()

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        self.admin_topic.start()
        self.producer.init_transactions(60)
        self.consumer.subscribe([self.source])
        while not self._stop:
            messages = self.consumer.consume(num_messages=2000, timeout=0.1)
            if messages:
                self._process(messages)
        # Only on a clean stop: a consumer in a fatal state (fenced) can block in close().
        self.consumer.close()
        self.admin_topic.stop()

    def validate(self, msg: Message, now: datetime,
                 window: AcceptanceWindow) -> tuple[str, UsageEvent]:
        key = msg.key()
        tenant_id = key.decode("utf-8", errors="replace") if key else ""
        if not tenant_id:
            raise EventRejected("the record key must be the tenant id")
        tenant = self.directory.tenant(tenant_id)
        if tenant is None and self._waited_for is None:
            # A tenant created a moment ago may not have reached this directory yet: wait
            # (once per batch, bounded) for the admin records written before now.
            self._waited_for = tenant_id
            self.admin_topic.catch_up(UNKNOWN_TENANT_WAIT)
            tenant = self.directory.tenant(tenant_id)
        if tenant is None:
            raise EventRejected(f"unknown tenant {tenant_id!r}")
        if tenant.status == "suspended":
            raise EventRejected(f"tenant {tenant_id} is suspended")
        self._check_credential(msg, tenant_id, now)
        raw = record_to_event(msg.value(), msg.headers())
        event = to_usage_event(raw, now, self.require_time)
        event = metered(event, raw.get("data") if isinstance(raw, dict) else None,
                        self.meter_cache.meters(self.directory.meters_for_type(event.meter)))
        why = window.rejection(event.time_ms)
        if why:
            raise EventRejected(why)
        return tenant_id, event

    def _key(self, found: credentials.Presented) -> ApiKey | None:
        if found.raw_key is not None:
            return (self.directory.key_by_hash(keys.key_hash(found.raw_key))
                    if keys.looks_like_key(found.raw_key) else None)
        return self.directory.key(found.attested_key_id or "")

    def _check_credential(self, msg: Message, tenant_id: str, now: datetime) -> None:
        """The record counts for ``tenant_id`` only with a credential of that tenant."""
        found = credentials.presented(_headers(msg), tenant_id, msg.value(),
                                      self.record_keys.by_id())
        if isinstance(found, str):
            raise EventRejected(found)
        key = self._key(found)
        if key is None and self._waited_for is None:
            # A key made a moment ago may not have reached this directory yet.
            self._waited_for = tenant_id
            self.admin_topic.catch_up(UNKNOWN_TENANT_WAIT)
            key = self._key(found)
        why = credentials.refusal(key, tenant_id, now)
        if why is not None:
            raise EventRejected(why)

    def _verified(self, msg: Message, tenant_id: str) -> ApiKey | None:
        """The API key in the record's header, when it is one of ``tenant_id``'s."""
        raw = next((v for k, v in _headers(msg) if k == credentials.KEY_HEADER), None)
        if not raw:
            return None
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        key = self._key(credentials.Presented(raw_key=text.strip()))
        return key if key is not None and key.tenant_id == tenant_id else None

    def judged_at(self, msg: Message, fallback: datetime) -> datetime:
        """When the record was accepted: its broker time (the ingest topic keeps
        LogAppendTime), so a validator that lags judges it as if it had kept up. A record
        with a producer's time (a topic created elsewhere without LogAppendTime) is judged
        at ``fallback``, the time it is processed."""
        kind, ms = msg.timestamp()
        if kind == TIMESTAMP_LOG_APPEND_TIME and ms > 0:
            return datetime.fromtimestamp(ms / 1000, UTC)
        if not self._warned_create_time:
            self._warned_create_time = True
            log.warning("%s has no LogAppendTime: records are judged by processing time, so "
                        "a lagging validator can refuse usage of a period that closed "
                        "meanwhile; set message.timestamp.type=LogAppendTime", self.source)
        return fallback

    def _dead(self, msg: Message, reason: str) -> None:
        """The record to the dead-letter topic (in the batch's transaction), as it came but
        for its API key, which is never kept (``ingest_credentials.dead_letter_headers``)."""
        key = msg.key()
        tenant_id = key.decode("utf-8", errors="replace") if key else ""
        kept = credentials.dead_letter_headers(
            _headers(msg), self._verified(msg, tenant_id), tenant_id, msg.value(),
            self.record_keys.current)
        headers = [*kept, ("meterly-error", reason.encode()),
                   ("meterly-source", where(msg).encode())]
        self.producer.produce(self.dead_letter, msg.value(), key=msg.key(), headers=headers)

    def _process(self, messages: list[Message]) -> None:
        processed_at = datetime.now(UTC)
        windows: dict[datetime, AcceptanceWindow] = {}
        valid: dict[str, list[UsageEvent]] = defaultdict(list)
        refused: list[tuple[Message, EventRejected]] = []
        self._waited_for = None
        # Judged before the transaction begins: waiting for a new tenant must not run
        # into the transaction timeout.
        for msg in data_messages(messages):
            now = self.judged_at(msg, processed_at)
            second = now.replace(microsecond=0)
            window = windows.get(second)
            if window is None:
                window = windows[second] = AcceptanceWindow.at(now, self.grace)
            try:
                tenant_id, event = self.validate(msg, now, window)
            except EventRejected as exc:
                refused.append((msg, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a record never stops the validator
                # Input no check foresaw: dead-lettered like any invalid record, with the
                # error, instead of failing the batch again and again.
                refused.append((msg, EventRejected(
                    f"unreadable record ({type(exc).__name__}: {exc})")))
                continue
            valid[tenant_id].append(event)
        self.producer.begin_transaction()
        for msg, why in refused:
            invalid_record(INGEST, where(msg), why, partial(self._dead, msg))
        for tenant_id, events in valid.items():
            for i in range(0, len(events), MAX_EVENTS_PER_RECORD):
                record = UsageRecord(tenant_id, tuple(events[i:i + MAX_EVENTS_PER_RECORD]))
                self.producer.produce(self.usage, usage_v1.encode(record),
                                      key=tenant_id.encode())
        failpoint("ingest-validator.before-commit")  # steps 3 and 4 written, 5 not reached
        if not commit_or_rewind(self.producer, self.consumer):
            return
        if refused:
            log.info("dead-lettered %d of %d ingest records", len(refused), len(messages),
                     extra={"rejected": len(refused), "records": len(messages)})


def _headers(msg: Message) -> list[tuple[str, str | bytes | None]]:
    raw = msg.headers() or []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def run_worker(settings: Settings) -> None:
    validator = IngestValidator(settings, settings.worker_id)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: validator.stop())
    exit_for_restart(validator.run)

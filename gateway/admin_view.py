"""Every gateway's view of tenants and API keys, fed by the compacted admin topic.

Writes go to Kafka first (acks=all) and are then applied to this process's view, so the
process that created a key accepts it on the very next request. Other processes follow the
topic's tail with a 100 ms fetch wait, so a revocation reaches them well within a second.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from gateway.kafka_io import AsyncProducer
from schemas import admin_v1
from schemas.admin_v1 import (
    AdminEntity,
    ApiKey,
    CreditRecord,
    PlanVersion,
    Subscription,
    Tenant,
    WebhookEndpoint,
)

log = logging.getLogger(__name__)


def time_text(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` as the RFC 3339 UTC text admin records carry (``...Z``)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_text() -> str:
    return time_text(datetime.now(UTC))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AdminView:
    def __init__(self, bootstrap: str, topic: str, producer: AsyncProducer | None) -> None:
        self.topic = topic
        self._producer = producer
        self._lock = threading.Lock()
        self.tenants: dict[str, Tenant] = {}
        self.keys: dict[str, ApiKey] = {}
        self._by_hash: dict[str, ApiKey] = {}
        self.plans: dict[tuple[str, int], PlanVersion] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.credits: dict[str, CreditRecord] = {}
        self.webhooks: dict[str, WebhookEndpoint] = {}
        self._hooks_by_tenant: dict[str, dict[str, WebhookEndpoint]] = {}
        self._caught_up = threading.Event()
        self._running = True
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "meterly-admin-view-unused",  # assign() only; no offsets committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
        })
        self._thread = threading.Thread(target=self._follow, name="admin-view", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        if not self._caught_up.wait(timeout):
            raise RuntimeError(f"could not read {self.topic} within {timeout:.0f}s")

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)

    def _follow(self) -> None:
        meta = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        ends = {}
        for tp in partitions:
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            ends[tp.partition] = high
        self._consumer.assign(partitions)
        while self._running:
            msg = self._consumer.poll(0.1)
            if msg is None:
                if not self._caught_up.is_set():
                    positions = self._consumer.position(partitions)
                    if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0
                           for tp in positions):
                        self._caught_up.set()
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("admin topic: %s", err)
                continue
            value = msg.value()
            if value is None:
                continue
            try:
                entity = admin_v1.decode(value)
            except (ValueError, TypeError):
                # A record this version cannot read (written by a newer one) must not stop
                # the view from following the topic.
                log.exception("unreadable admin record at offset %s", msg.offset())
                continue
            self.apply(entity)
        self._consumer.close()

    def apply(self, entity: AdminEntity) -> None:
        with self._lock:
            if isinstance(entity, Tenant):
                current = self.tenants.get(entity.id)
                if current is None or current.updated_at <= entity.updated_at:
                    self.tenants[entity.id] = entity
            elif isinstance(entity, ApiKey):
                self.keys[entity.id] = entity
                self._by_hash[entity.hash] = entity
            elif isinstance(entity, PlanVersion):
                self.plans[(entity.name, entity.version)] = entity
            elif isinstance(entity, Subscription):
                current_sub = self.subscriptions.get(entity.tenant_id)
                if current_sub is None or current_sub.updated_at <= entity.updated_at:
                    self.subscriptions[entity.tenant_id] = entity
            elif isinstance(entity, WebhookEndpoint):
                current_hook = self.webhooks.get(entity.id)
                if current_hook is None or current_hook.updated_at <= entity.updated_at:
                    self.webhooks[entity.id] = entity
                    self._hooks_by_tenant.setdefault(entity.tenant_id, {})[entity.id] = entity
            else:
                self.credits[entity.id] = entity

    def endpoints_of(self, tenant_id: str) -> list[WebhookEndpoint]:
        hooks = self._hooks_by_tenant.get(tenant_id, {})
        return [w for w in list(hooks.values()) if not w.deleted]

    def latest_plan(self, name: str) -> PlanVersion | None:
        versions = [v for (n, v) in self.plans if n == name]
        return self.plans[(name, max(versions))] if versions else None

    async def publish(self, entity: AdminEntity) -> None:
        if self._producer is None:
            raise RuntimeError("this admin view is read-only")
        await self._producer.send(self.topic, admin_v1.encode(entity), key=entity.record_key)
        self.apply(entity)

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._by_hash.get(key_hash)

    @staticmethod
    def key_usable(key: ApiKey, at: float | None = None) -> str | None:
        """Why ``key`` cannot be used now, or None when it can."""
        moment = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
        if key.revoked_at is not None:
            return "the API key was revoked"
        if key.expires_at is not None and parse_time(key.expires_at) <= moment:
            return "the API key was rotated and its overlap period has ended"
        return None

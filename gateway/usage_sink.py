"""Packs accepted usage events into ``usage.v1`` records, one per tenant per few milliseconds.

Kafka consumers pay per record, so concurrent requests of one tenant that arrive within
``linger`` seconds share one record (keyed by tenant). Every request still learns its own
outcome: all requests in a record are acknowledged together, or all fail together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from processors.kafka.async_producer import AsyncProducer
from schemas import usage_v1
from schemas.usage_v1 import UsageEvent, UsageRecord


@dataclass
class _Pending:
    events: list[UsageEvent] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    handle: asyncio.TimerHandle | None = None


class UsageSink:
    def __init__(self, producer: AsyncProducer, topic: str, linger: float = 0.002,
                 max_events: int = 2000) -> None:
        self._producer = producer
        self._topic = topic
        self._linger = linger
        self._max_events = max_events
        self._pending: dict[str, _Pending] = {}
        # Strong references, so a send in flight is never garbage-collected.
        self._sending: set[asyncio.Task[None]] = set()

    async def accept(self, tenant: str, events: list[UsageEvent], correlation_id: str) -> None:
        """Return once Kafka acknowledged a record holding ``events``; raise DeliveryFailed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        pending = self._pending.get(tenant)
        if pending is not None and len(pending.events) + len(events) > self._max_events:
            self._flush(tenant)
            pending = None
        if pending is None:
            pending = self._pending[tenant] = _Pending()
            pending.handle = loop.call_later(self._linger, self._flush, tenant)
        pending.events.extend(events)
        pending.waiters.append(waiter)
        pending.correlation_ids.append(correlation_id)
        await waiter

    def _flush(self, tenant: str) -> None:
        pending = self._pending.pop(tenant, None)
        if pending is None:
            return
        if pending.handle is not None:
            pending.handle.cancel()
        task = asyncio.ensure_future(self._send(tenant, pending))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, tenant: str, pending: _Pending) -> None:
        record = UsageRecord(tenant, tuple(pending.events))
        headers: list[tuple[str, str | bytes | None]] = [
            ("correlation-id", cid.encode()) for cid in pending.correlation_ids
        ]
        try:
            await self._producer.send(self._topic, usage_v1.encode(record),
                                      key=tenant.encode(), headers=headers)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for waiter in pending.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)

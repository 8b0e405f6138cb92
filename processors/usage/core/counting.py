"""The counting rule, as pure code: which events count, and what they add.

An event is identified by (tenant, source, id), as CloudEvents defines identity. It counts
once: the first time its identity is seen; every later delivery is a duplicate, whether it
is a client's resend, a gateway's retry or Kafka's redelivery after a crash. Identities are
hashed to 16 bytes (BLAKE2b-128): a false match between two different events is a 2^-128
event per pair, far below the chance of a hardware fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from hashlib import blake2b

from processors.usage.core.periods import dedupe_expiry_day, period_of_ms
from schemas.counter_changelog_v1 import CounterKey
from schemas.usage_v1 import UsageRecord


def identity_hash(tenant: str, source: str, event_id: str) -> bytes:
    return blake2b(f"{tenant}\0{source}\0{event_id}".encode(), digest_size=16).digest()


@dataclass
class Counter:
    count: int = 0
    total: Decimal = Decimal(0)


@dataclass
class Fold:
    """What one batch of records adds: counter increments and newly seen identities."""

    increments: dict[CounterKey, Counter] = field(default_factory=dict)
    new_ids: list[tuple[bytes, int]] = field(default_factory=list)
    counted: int = 0
    duplicates: int = 0
    _pending: set[bytes] = field(default_factory=set)

    def add(self, record: UsageRecord, known: Callable[[list[bytes]], list[bool]]) -> None:
        """Fold ``record`` in.

        ``known`` answers, for a list of identities, which were counted before this batch;
        asking once per record lets the store answer with one multi-get.
        """
        tenant = record.tenant
        hashes = [identity_hash(tenant, e.source, e.id) for e in record.events]
        fresh = [h for h in hashes if h not in self._pending]
        seen_before = set()
        if fresh:
            seen_before = {h for h, k in zip(fresh, known(fresh), strict=True) if k}
        for event, h in zip(record.events, hashes, strict=True):
            if h in self._pending or h in seen_before:
                self.duplicates += 1
                continue
            self._pending.add(h)
            self.new_ids.append((h, dedupe_expiry_day(event.time_ms)))
            key = (tenant, period_of_ms(event.time_ms), event.meter)
            counter = self.increments.get(key)
            if counter is None:
                counter = self.increments[key] = Counter()
            counter.count += 1
            counter.total += event.quantity
            self.counted += 1


def apply(counters: dict[CounterKey, Counter], fold: Fold) -> dict[CounterKey, Counter]:
    """Add ``fold``'s increments to ``counters`` in place; return the new absolute values."""
    changed = {}
    for key, inc in fold.increments.items():
        current = counters.get(key) or Counter()
        updated = Counter(current.count + inc.count, current.total + inc.total)
        counters[key] = updated
        changed[key] = updated
    return changed

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
from datetime import timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from hashlib import blake2b

from processors.usage.core.periods import DEFAULT_GRACE, dedupe_expiry_day, period_of_ms
from processors.usage.core.sequences import Observed, SourceSequence, observe
from schemas.counter_changelog_v1 import CounterKey
from schemas.usage_v1 import UsageRecord

#: Totals are summed exactly: a quantity has at most 15 integer and 9 decimal digits, so
#: 60 digits hold any sum a counter can reach; a sum that would round raises instead.
COUNTING = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


def identity_hash(tenant: str, source: str, event_id: str) -> bytes:
    """The 16-byte identity of an event.

    Without a NUL in any part, the parts joined by NULs (the form every remembered
    identity was stored in before NULs were considered, kept so upgrades count nothing
    twice). With one, the joined form would be ambiguous (source ``a\\0b`` with id ``c``
    against source ``a`` with id ``b\\0c``), so the parts are length-prefixed after a
    leading NUL, which the joined form never has (a tenant id is never empty).
    """
    if "\0" not in tenant and "\0" not in source and "\0" not in event_id:
        raw = f"{tenant}\0{source}\0{event_id}".encode()
    else:
        raw = b"\0" + b"".join(len(b).to_bytes(4, "big") + b for b in (
            tenant.encode(), source.encode(), event_id.encode()))
    return blake2b(raw, digest_size=16).digest()


@dataclass
class Counter:
    count: int = 0
    total: Decimal = Decimal(0)


@dataclass
class Fold:
    """What one batch of records adds: counter increments and newly seen identities."""

    #: The deployment's grace (``METERLY_GRACE_SECONDS``): an identity is kept until its
    #: event time is refused, which is after its period's end plus this grace.
    grace: timedelta = DEFAULT_GRACE
    #: The sequence state of a (tenant, source) before this fold (None: none seen yet).
    sequence_of: Callable[[tuple[str, str]], SourceSequence | None] = lambda _key: None
    increments: dict[CounterKey, Counter] = field(default_factory=dict)
    new_ids: list[tuple[bytes, int]] = field(default_factory=list)
    sequences: Observed = field(default_factory=Observed)
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
            self.new_ids.append((h, dedupe_expiry_day(event.time_ms, self.grace)))
            key = (tenant, period_of_ms(event.time_ms), event.meter)
            counter = self.increments.get(key)
            if counter is None:
                counter = self.increments[key] = Counter()
            counter.count += 1
            with localcontext(COUNTING):
                counter.total += event.quantity
            self.counted += 1
            if event.sequence is not None:
                self._sequence(tenant, event.source, event.sequence)

    def _sequence(self, tenant: str, source: str, number: int) -> None:
        """A counted event's sequence number (a duplicate's changes nothing)."""
        key = (tenant, source)
        seen = self.sequences
        state, opened, filled = observe(
            seen.states[key] if key in seen.states else self.sequence_of(key), number)
        seen.states[key] = state
        if opened is not None:
            seen.opened.append((tenant, source, *opened))
        seen.filled += filled


def apply(counters: dict[CounterKey, Counter], fold: Fold) -> dict[CounterKey, Counter]:
    """Add ``fold``'s increments to ``counters`` in place; return the new absolute values."""
    changed = {}
    for key, inc in fold.increments.items():
        current = counters.get(key) or Counter()
        with localcontext(COUNTING):
            total = current.total + inc.total
        updated = Counter(current.count + inc.count, total)
        counters[key] = updated
        changed[key] = updated
    return changed

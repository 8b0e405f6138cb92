"""The counting rule, as pure code: which events count, and what they add.

An event is identified by (tenant, source, id), as CloudEvents defines identity. It counts
once: the first time its identity is seen; every later delivery is a duplicate, whether it
is a client's resend, a gateway's retry or Kafka's redelivery after a crash. Identities are
hashed to 16 bytes (BLAKE2b-128): a false match between two different events is a 2^-128
event per pair, far below the chance of a hardware fault.

Every event adds 1 and its quantity to the counter of (tenant, period, type), as before
meters existed (what plans price today). One that meters read also adds each contribution
extracted at ingest to its meter's group (``processors.usage.core.aggregations``); a
unique_count value counts when its member hash (tenant, meter, period, group, value;
namespaced apart from event identities) is first seen, and is then remembered exactly like
an identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, localcontext
from hashlib import blake2b
from typing import Any

from processors.usage.core.aggregations import COUNTING, GroupState, fold, merge
from processors.usage.core.periods import DEFAULT_GRACE, dedupe_expiry_day, period_of_ms
from processors.usage.core.sequences import Observed, SourceSequence, observe
from schemas.counter_changelog_v1 import CounterKey, GroupKey
from schemas.usage_v1 import MeterContribution, UsageRecord

#: A group's stored state: its meter's aggregation and the folded values.
Group = tuple[str, GroupState]


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


def member_hash(tenant: str, meter: str, period: str, group: tuple[tuple[str, str], ...],
                value: str) -> bytes:
    """The 16-byte hash of a unique_count value of one group: remembered like an event
    identity, and never equal to one (a leading 0x01 and length-prefixed parts)."""
    parts = (tenant, meter, period, *(p for pair in group for p in pair), value)
    raw = b"\x01unique" + b"".join(len(b).to_bytes(4, "big") + b
                                   for b in (x.encode() for x in parts))
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
    #: What the batch adds to defined meters' groups.
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    #: New identities, and new unique_count members, with their expiry days.
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
        counted = []
        for event, h in zip(record.events, hashes, strict=True):
            if h in self._pending or h in seen_before:
                self.duplicates += 1
                continue
            self._pending.add(h)
            counted.append((event, h))
        members = self._members(tenant, counted, known)
        for event, h in counted:
            self.new_ids.append((h, dedupe_expiry_day(event.time_ms, self.grace)))
            self.counted += 1
            if event.sequence is not None:
                self._sequence(tenant, event.source, event.sequence)
            for c in event.contributions or ():
                self._contribute(tenant, event.time_ms, h, c, members)
            key = (tenant, period_of_ms(event.time_ms), event.meter)
            counter = self.increments.get(key)
            if counter is None:
                counter = self.increments[key] = Counter()
            counter.count += 1
            with localcontext(COUNTING):
                counter.total += event.quantity

    def _members(self, tenant: str, counted: list[tuple[Any, bytes]],
                 known: Callable[[list[bytes]], list[bool]]) -> set[bytes]:
        """The unique_count members the counted events bring that are new (not remembered,
        not earlier in this batch), asked for in one lookup."""
        wanted = []
        for event, _h in counted:
            for c in event.contributions or ():
                if c.aggregation == "unique_count":
                    wanted.append(member_hash(tenant, c.meter, period_of_ms(event.time_ms),
                                              c.group, c.value))
        fresh = list(dict.fromkeys(m for m in wanted if m not in self._pending))
        if not fresh:
            return set()
        return {m for m, k in zip(fresh, known(fresh), strict=True) if not k}

    def _contribute(self, tenant: str, time_ms: int, identity: bytes, c: MeterContribution,
                    new_members: set[bytes]) -> None:
        period = period_of_ms(time_ms)
        key = (tenant, period, c.meter, c.group)
        aggregation, state = self.groups.get(key, (c.aggregation, GroupState()))
        first_seen = False
        value: Decimal | str = c.value
        if c.aggregation == "unique_count":
            member = member_hash(tenant, c.meter, period, c.group, c.value)
            first_seen = member in new_members and member not in self._pending
            if first_seen:
                self._pending.add(member)
                self.new_ids.append((member, dedupe_expiry_day(time_ms, self.grace)))
        else:
            value = Decimal(c.value)
        self.groups[key] = (aggregation, fold(state, aggregation,  # type: ignore[arg-type]
                                              value, time_ms, identity, first_seen))

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


def apply_groups(groups: dict[GroupKey, Group], batch: Fold) -> dict[GroupKey, Group]:
    """Merge ``batch``'s group increments into ``groups`` in place; return the new absolute
    states."""
    changed = {}
    for key, (aggregation, inc) in batch.groups.items():
        current = groups.get(key)
        updated = (aggregation, inc if current is None else merge(current[1], inc))
        groups[key] = updated
        changed[key] = updated
    return changed


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

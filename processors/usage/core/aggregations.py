"""How each aggregation folds the contributions of counted events into a group's state.
Pure (docs/meters.md, "Exactly once, per aggregation").

The counter folds only events it has not counted before (identities are deduplicated first,
``processors.usage.core.counting``), and only values it has not seen before count for
``unique_count`` (the set of seen values is remembered like identities). Under those two
rules every fold here gives the same state for any order of the same events: count and sum
add, max takes the larger, latest takes the greatest by (event time, identity hash), a total
order, and unique_count adds one per value first seen. ``tests/unit/test_aggregations.py``
checks that over interleavings with duplicates and replays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext

from processors.usage.core.meters import Aggregation

ZERO = Decimal(0)
#: Totals are summed exactly: a quantity has at most 15 integer and 9 decimal digits, so
#: 60 digits hold any sum a counter can reach; a sum that would round raises instead.
COUNTING = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


@dataclass(frozen=True)
class GroupState:
    """What a group's counter holds: every field is kept whatever the aggregation, so the
    changelog format is one; ``value`` reads the one that is billed."""

    count: int = 0
    total: Decimal = ZERO
    maximum: Decimal | None = None
    #: (event time in ms, identity hash, value) of the latest event.
    latest: tuple[int, bytes, Decimal] | None = None
    distinct: int = 0

    def value(self, aggregation: Aggregation) -> Decimal:
        """The aggregate a price applies to."""
        if aggregation == "count":
            return Decimal(self.count)
        if aggregation == "sum":
            return self.total
        if aggregation == "max":
            return self.maximum if self.maximum is not None else ZERO
        if aggregation == "latest":
            return self.latest[2] if self.latest is not None else ZERO
        return Decimal(self.distinct)


def fold(state: GroupState, aggregation: Aggregation, value: Decimal | str, time_ms: int,
         identity: bytes, first_seen: bool = True) -> GroupState:
    """``state`` with one newly counted event's contribution. For unique_count, ``value``
    is the value's text and ``first_seen`` says whether the set lacked it."""
    count = state.count + 1
    if aggregation == "unique_count":
        return replace(state, count=count, distinct=state.distinct + (1 if first_seen else 0))
    assert isinstance(value, Decimal)
    if aggregation in ("count", "sum"):
        with localcontext(COUNTING):
            return replace(state, count=count, total=state.total + value)
    if aggregation == "max":
        bigger = value if state.maximum is None else max(state.maximum, value)
        return replace(state, count=count, maximum=bigger)
    candidate = (time_ms, identity, value)
    if state.latest is None or candidate[:2] > state.latest[:2]:
        return replace(state, count=count, latest=candidate)
    return replace(state, count=count)


def merge(a: GroupState, b: GroupState) -> GroupState:
    """Two states of disjoint sets of events as one (windows into a longer window; a
    batch's increments onto the stored state). unique_count states merge only when their
    value sets are disjoint (a window's distinct values are per window)."""
    with localcontext(COUNTING):
        total = a.total + b.total
    maximum = b.maximum if a.maximum is None else (
        a.maximum if b.maximum is None else max(a.maximum, b.maximum))
    latest = b.latest if a.latest is None else (
        a.latest if b.latest is None or a.latest[:2] >= b.latest[:2] else b.latest)
    return GroupState(a.count + b.count, total, maximum, latest, a.distinct + b.distinct)

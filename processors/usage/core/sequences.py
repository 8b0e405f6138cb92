"""Producer gap detection, as pure rules: which sequence numbers of a source are missing.

A producer may number its events per ``source`` with the CloudEvents ``sequence``
extension. Meterly does not assume where numbering starts or that events arrive in order:
for each (tenant, source) it keeps the lowest and the highest number seen and the ranges
missing between them. A number that arrives fills (or splits) the range holding it; a
number beyond either end extends that end and opens the range in between. The state is an
absolute value, folded exactly once per counted event by the counting worker and written to
its changelog in the same transaction as the counters, so it survives any crash as they do.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

#: Missing ranges kept per source; beyond it new gaps are not tracked (``overflow``), which
#: the API and the invoice say, rather than keeping unbounded state for a broken producer.
MAX_GAPS = 10_000


def missing_in(gaps: tuple[tuple[int, int], ...]) -> int:
    """How many numbers the inclusive ranges ``gaps`` hold."""
    return sum(b - a + 1 for a, b in gaps)


@dataclass(frozen=True)
class SourceSequence:
    low: int
    high: int
    #: Missing ranges strictly between ``low`` and ``high``, inclusive, sorted, disjoint.
    gaps: tuple[tuple[int, int], ...] = ()
    overflow: bool = False

    @property
    def missing(self) -> int:
        return missing_in(self.gaps)

    def as_tuple(self) -> tuple[int, int, tuple[tuple[int, int], ...], bool]:
        return self.low, self.high, self.gaps, self.overflow

    @classmethod
    def of(cls, state: tuple[int, int, tuple[tuple[int, int], ...], bool]) -> SourceSequence:
        low, high, gaps, overflow = state
        return cls(low, high, tuple(gaps), overflow)


@dataclass
class Observed:
    """What one fold did to the sequences: new states, gaps opened and numbers filled."""

    states: dict[tuple[str, str], SourceSequence] = field(default_factory=dict)
    opened: list[tuple[str, str, int, int]] = field(default_factory=list)
    filled: int = 0


def observe(state: SourceSequence | None, number: int) -> tuple[SourceSequence,
                                                                tuple[int, int] | None, bool]:
    """``state`` after ``number`` arrived; the range it opened, if any; and whether it
    filled a missing number."""
    if state is None:
        return SourceSequence(number, number), None, False
    gaps = list(state.gaps)
    if number > state.high:
        opened = (state.high + 1, number - 1) if number > state.high + 1 else None
        return _with(state, state.low, number, gaps, opened, append=True), opened, False
    if number < state.low:
        opened = (number + 1, state.low - 1) if number < state.low - 1 else None
        return _with(state, number, state.high, gaps, opened, append=False), opened, False
    i = bisect.bisect_right(gaps, number, key=lambda gap: gap[0]) - 1
    if i < 0 or not gaps[i][0] <= number <= gaps[i][1]:
        return state, None, False  # seen before (another event with the same number)
    a, b = gaps.pop(i)
    gaps[i:i] = [r for r in ((a, number - 1), (number + 1, b)) if r[0] <= r[1]]
    return SourceSequence(state.low, state.high, tuple(gaps), state.overflow), None, True


def _with(state: SourceSequence, low: int, high: int, gaps: list[tuple[int, int]],
          opened: tuple[int, int] | None, append: bool) -> SourceSequence:
    overflow = state.overflow
    if opened is not None:
        if len(gaps) >= MAX_GAPS:
            overflow = True
        elif append:
            gaps.append(opened)
        else:
            gaps.insert(0, opened)
    return SourceSequence(low, high, tuple(gaps), overflow)


def gap_message_id(tenant_id: str, source: str, first: int, last: int) -> str:
    """The ``usage.gap_detected`` message of one opened range: the same range opened again
    (a batch counted again after a crash never commits twice, but a replay might) has the
    same webhook id, which receivers drop as a repeat."""
    digest = hashlib.blake2b(f"{tenant_id}\x00{source}\x00{first}\x00{last}".encode(),
                             digest_size=12).hexdigest()
    return f"msg_gap_{digest}"

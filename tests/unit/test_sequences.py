"""Producer gap detection's rules (processors/usage/core/sequences.py) and their fold."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from processors.usage.core.counting import Fold
from processors.usage.core.sequences import MAX_GAPS, SourceSequence, observe
from schemas.cloudevents import EventRejected, parse_sequence
from schemas.usage_v1 import UsageEvent, UsageRecord, decode, encode


def _fold(numbers: list[int], state: SourceSequence | None = None) -> Fold:
    fold = Fold(sequence_of=lambda _key: state)
    events = tuple(UsageEvent(f"e{n}-{i}", "orders", "m", 0, Decimal(1), sequence=n)
                   for i, n in enumerate(numbers))
    fold.add(UsageRecord("t", events), lambda hashes: [False] * len(hashes))
    return fold


def test_gaps_open_between_numbers_and_close_as_they_arrive() -> None:
    fold = _fold([1, 2, 5, 9])
    state = fold.sequences.states[("t", "orders")]
    assert (state.low, state.high, state.gaps) == (1, 9, ((3, 4), (6, 8)))
    assert state.missing == 5
    assert fold.sequences.opened == [("t", "orders", 3, 4), ("t", "orders", 6, 8)]
    later = _fold([4, 7, 3], state)
    assert later.sequences.states[("t", "orders")].gaps == ((6, 6), (8, 8))
    assert later.sequences.filled == 3
    assert later.sequences.opened == []


def test_numbers_below_the_lowest_extend_it_and_repeats_change_nothing() -> None:
    state, opened, _ = observe(SourceSequence(10, 12), 7)
    assert (state.low, state.gaps, opened) == (7, ((8, 9),), (8, 9))
    again, opened, filled = observe(state, 11)
    assert again == state
    assert opened is None
    assert not filled


def test_duplicates_are_not_observed_twice() -> None:
    fold = Fold()
    event = UsageEvent("same", "s", "m", 0, Decimal(1), sequence=4)
    fold.add(UsageRecord("t", (event, event)), lambda hashes: [False] * len(hashes))
    assert fold.counted == 1
    assert fold.sequences.states[("t", "s")] == SourceSequence(4, 4)


def test_any_arrival_order_gives_exactly_the_numbers_never_sent() -> None:
    rng = random.Random(7)
    for _ in range(200):
        sent = sorted(rng.sample(range(1, 400), rng.randrange(1, 120)))
        shuffled = rng.sample(sent, len(sent))
        state = None
        for n in shuffled:
            state, _opened, _filled = observe(state, n)
        assert state is not None
        missing = {n for a, b in state.gaps for n in range(a, b + 1)}
        assert missing == set(range(sent[0], sent[-1] + 1)) - set(sent)
        assert (state.low, state.high) == (sent[0], sent[-1])


def test_a_source_with_too_many_gaps_says_so() -> None:
    state = SourceSequence(0, 0)
    for n in range(2, 2 * (MAX_GAPS + 5), 2):
        state, _opened, _filled = observe(state, n)
    assert len(state.gaps) == MAX_GAPS
    assert state.overflow


@pytest.mark.parametrize(("value", "number"), [("42", 42), (7, 7), ("000123", 123), (None, None)])
def test_the_sequence_extension_is_an_unsigned_integer(value: object, number: int | None) -> None:
    assert parse_sequence(value) == number


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "", True, 1.0, "1" * 19, "١٢"])
def test_other_sequences_are_refused(value: object) -> None:
    with pytest.raises(EventRejected, match="sequence"):
        parse_sequence(value)


def test_usage_records_carry_the_sequence_and_read_six_column_events_too() -> None:
    record = UsageRecord("t", (UsageEvent("a", "s", "m", 1, Decimal(1)),
                               UsageEvent("b", "s", "m", 1, Decimal(1), sequence=9)))
    raw = encode(record)
    assert b'"s","m",1,"1",null,null]' in raw
    assert b'"s","m",1,"1",null,9]' in raw
    assert decode(raw) == record
    older = b'{"v":1,"tenant":"t","events":[["a","s","m",1,"1",null]]}'
    assert decode(older).events[0].sequence is None

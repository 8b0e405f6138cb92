"""Every aggregation is exact once: folding any interleaving of a set of events, with
duplicates and replays, gives the state of folding the unique events once (issue 15,
"Property tests"), and merging the states of a split gives the state of the whole."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from processors.usage.core.aggregations import GroupState, fold, merge
from processors.usage.core.counting import identity_hash
from processors.usage.core.meters import AGGREGATIONS, Aggregation

#: (event id, event time ms, numeric value, unique value)
Event = tuple[str, int, Decimal, str]

events = st.lists(st.tuples(
    st.text("abcdef", min_size=1, max_size=3),
    st.integers(0, 5),  # few times: ties on event time are common
    st.decimals(0, 1000, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(["u1", "u2", "u3", "u4"])), min_size=0, max_size=30,
    unique_by=lambda e: e[0])


def _fold_deliveries(aggregation: Aggregation, deliveries: list[Event]) -> GroupState:
    """What the counter does: an identity counts once; a value once for unique_count."""
    state, seen, values = GroupState(), set(), set()
    for event_id, time_ms, number, unique in deliveries:
        identity = identity_hash("ten", "src", event_id)
        if identity in seen:
            continue
        seen.add(identity)
        value: Decimal | str = unique if aggregation == "unique_count" else number
        state = fold(state, aggregation, value, time_ms, identity,
                     first_seen=unique not in values)
        values.add(unique)
    return state


@given(events, st.data())
def test_any_interleaving_with_duplicates_and_replays_folds_to_the_unique_events_once(
        unique: list[Event], data: st.DataObject) -> None:
    # Deliveries: every event at least once, some again (a client's resend, a replay after a
    # crash), in any order.
    repeats = data.draw(st.lists(st.sampled_from(unique), max_size=20)) if unique else []
    deliveries = data.draw(st.permutations(unique + repeats))
    for aggregation in AGGREGATIONS:
        once = _fold_deliveries(aggregation, unique)
        assert _fold_deliveries(aggregation, deliveries) == once, aggregation


@given(events, st.integers(0, 30))
def test_the_states_of_two_parts_merge_into_the_state_of_the_whole(
        unique: list[Event], cut: int) -> None:
    for aggregation in ("count", "sum", "max", "latest"):
        whole = _fold_deliveries(aggregation, unique)
        parts = merge(_fold_deliveries(aggregation, unique[:cut]),
                      _fold_deliveries(aggregation, unique[cut:]))
        assert parts == whole, aggregation


def test_each_aggregation_reads_its_own_value() -> None:
    state = GroupState()
    events = [("a", 10, Decimal("5"), "x"), ("b", 20, Decimal("3"), "y"),
              ("c", 20, Decimal("7"), "x")]
    results = {}
    for aggregation in AGGREGATIONS:
        results[aggregation] = _fold_deliveries(aggregation, events).value(aggregation)
    assert results == {"count": 3, "sum": Decimal(15), "max": Decimal(7),
                       # b and c share the latest time: the larger identity hash wins.
                       "latest": Decimal(7) if identity_hash("ten", "src", "c") >
                       identity_hash("ten", "src", "b") else Decimal(3),
                       "unique_count": 2}
    assert state.value("max") == 0
    assert state.value("latest") == 0

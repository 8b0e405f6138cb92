"""Committing after out-of-order completion never skips a record still in flight."""

from __future__ import annotations

from processors.kafka.offset_tracker import OffsetTracker


def test_commits_up_to_the_oldest_record_in_flight() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12):
        t.started("p0", offset)
    t.finished("p0", 11)
    t.finished("p0", 12)
    assert t.committable() == {"p0": 10}  # 10 is still running: nothing after it counts
    t.committed({"p0": 10})
    assert t.committable() == {}
    t.finished("p0", 10)
    assert t.committable() == {"p0": 13}


def test_partitions_are_independent_and_revoked_ones_are_dropped() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.started("a", 0)
    t.started("b", 5)
    t.finished("b", 5)
    assert t.committable() == {"a": 0, "b": 6}
    t.forget("a")
    assert t.committable() == {"b": 6}


def test_a_record_put_back_for_later_is_not_committed() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.started("r", 3)
    t.finished("r", 3)
    t.started("r", 4)
    t.finished("r", 4)
    t.rewind("r", 4)  # offset 4 was not due yet: it will be read again
    assert t.committable() == {"r": 4}

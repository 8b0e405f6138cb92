"""The close barrier's pure rules (processors/usage/core/completeness.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.usage.core.completeness import STAGES, Snapshot, records_left


def test_a_group_at_or_past_its_targets_has_nothing_left() -> None:
    assert records_left({0: 10, 1: 7}, {}, {0: 10, 1: 5}) == {}


def test_what_a_group_still_has_to_commit_past_per_partition() -> None:
    assert records_left({0: 4, 1: 9}, {}, {0: 10, 1: 10}) == {0: 6, 1: 1}


def test_a_partition_never_committed_stands_at_its_low_watermark() -> None:
    # Partition 0: nothing committed, records from offset 0; partition 1: retention
    # removed everything below 30, so the group's old offset counts from there.
    assert records_left({0: -1001, 1: 12}, {0: 0, 1: 30}, {0: 8, 1: 35}) == {0: 8, 1: 5}
    # A partition missing from the answer has not been read at all.
    assert records_left({}, {2: 0}, {2: 3}) == {2: 3}
    # An empty partition (target 0) needs nothing.
    assert records_left({0: -1001}, {0: 0}, {0: 0}) == {}


def test_stages_run_in_the_pipeline_order() -> None:
    assert [name for name, _topic in STAGES] == ["ingest-validator", "counter", "mirror"]
    snap = Snapshot(datetime(2026, 12, 1, tzinfo=UTC))
    assert snap.stage_name == "ingest-validator"
    assert not snap.passed
    done = Snapshot(snap.taken_at, len(STAGES))
    assert done.passed
    assert done.stage_name == "complete"

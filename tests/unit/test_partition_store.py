"""The local store is a cache of the changelog: commits, replays and reopening agree."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from processors.counting import Counter, identity_hash
from processors.partition_store import PartitionStore
from schemas import counter_changelog_v1 as changelog

KEY = ("t", "2026-11", "m")


def test_committed_state_survives_reopening(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    ids = [(identity_hash("t", "s", str(i)), 21_000) for i in range(3)]
    store.committed({KEY: Counter(3, Decimal("1.5"))}, ids, next_offset=7)
    store.close()
    again = PartitionStore(tmp_path / "p0")
    assert again.checkpoint == 7
    assert again.counters == {KEY: Counter(3, Decimal("1.5"))}
    assert again.knows_many([ids[0][0], identity_hash("t", "s", "new")]) == [True, False]
    again.close()


def test_replaying_a_changelog_tail_twice_changes_nothing(tmp_path: Path) -> None:
    records = [
        (changelog.seen_key(0), changelog.seen_value([(identity_hash("t", "s", "a"), 1)])),
        (changelog.counter_key(KEY), changelog.counter_value(1, Decimal(2))),
        (changelog.counter_key(KEY), changelog.counter_value(4, Decimal(9))),
    ]
    store = PartitionStore(tmp_path / "p1")
    for _ in range(2):  # a crash after the commit but before the local write replays it
        for offset, (key, value) in enumerate(records):
            store.restore(key, value, offset)
        store.flush_restore(checkpoint=len(records))
    assert store.counters == {KEY: Counter(4, Decimal(9))}
    assert store.checkpoint == 3
    assert store.knows(identity_hash("t", "s", "a"))
    store.close()


def test_only_committed_identities_are_known(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p2")
    store.committed({KEY: Counter(1, Decimal(1))}, [(identity_hash("t", "s", "x"), 1)], 3)
    assert store.knows_many([identity_hash("t", "s", "x"), identity_hash("t", "s", "y"),
                             identity_hash("u", "s", "x")]) == [True, False, False]
    assert store.counters[KEY] == Counter(1, Decimal(1))
    store.close()

"""The local store is a cache of the changelog: commits, replays and reopening agree."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from processors.usage.core.counting import Counter, identity_hash
from processors.usage.partition_store import PartitionStore
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


def test_expired_identities_are_found_and_forgotten(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p3")
    old = [(identity_hash("t", "s", f"old{i}"), 100) for i in range(3)]
    new = [(identity_hash("t", "s", "new"), 200)]
    store.committed({}, old, 1, [(changelog.seen_key(0), 100, [h for h, _d in old])])
    store.committed({}, new, 2, [(changelog.seen_key(1), 200, [h for h, _d in new])])
    assert store.expired_records(today=100) == []
    assert store.expired_records(today=150) == [changelog.seen_key(0)]
    assert store.forget([changelog.seen_key(0)], today=150) == 3
    assert store.knows_many([old[0][0], new[0][0]]) == [False, True]
    assert store.expired_records(today=150) == []
    assert store.expired_records(today=201) == [changelog.seen_key(1)]
    store.close()


def test_restoring_a_tombstone_drops_the_expiry_index(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p4")
    seen = changelog.seen_key(5)
    store.restore(seen, changelog.seen_value([(identity_hash("t", "s", "a"), 10)]), 0)
    store.flush_restore()
    assert store.expired_records(today=11) == [seen]
    store.restore(seen, None, 1)
    store.flush_restore()
    assert store.expired_records(today=11) == []
    store.close()


class _CountingScans:
    """The store's database, counting range scans (``items``)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.scans = inner, 0

    def items(self, *args: Any, **kwargs: Any) -> Any:
        self.scans += 1
        return self.inner.items(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_record_and_its_tombstone_restored_in_one_batch_leave_no_index_behind(
        tmp_path: Path) -> None:
    """exactly-once.md P12 (E5): the tombstone's unindex read the database, not the batch
    the record was still in, and left an ``x:`` entry that every later sweep found again."""
    store = PartitionStore(tmp_path / "p5")
    seen = changelog.seen_key(9)
    store.restore(seen, changelog.seen_value([(identity_hash("t", "s", "a"), 10)]), 0)
    store.restore(seen, None, 1)
    store.flush_restore()
    assert store.expired_records(today=11) == []
    store.close()


def test_forgetting_touches_only_the_expired_records_identities(tmp_path: Path) -> None:
    """The sweep no longer scans every remembered identity: with a million remembered
    identities of later expiry, forgetting one record reads only that record's members."""
    store = PartitionStore(tmp_path / "p6")
    old = [(identity_hash("t", "s", f"old{i}"), 100) for i in range(10)]
    store.committed({}, old, 1, [(changelog.seen_key(0), 100, [h for h, _d in old])])
    keep = [(identity_hash("t", "s", f"keep{i}"), 300) for i in range(200_000)]
    store.committed({}, keep, 2, [(changelog.seen_key(1), 300, [h for h, _d in keep])])
    db = _CountingScans(store._db)
    store._db = db  # type: ignore[assignment]
    assert store.forget(store.expired_records(today=150), today=150) == 10
    store._db = db.inner
    assert db.scans == 1  # expired_records' index read; no scan of the identities
    assert store.knows_many([old[0][0], keep[0][0]]) == [False, True]
    store.close()


def test_records_from_before_members_were_kept_are_forgotten_by_one_scan(
        tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p7")
    seen = changelog.seen_key(3)
    ids = [(identity_hash("t", "s", f"x{i}"), 10) for i in range(5)]
    store.committed({}, ids, 1, [(seen, 10, [h for h, _d in ids])])
    store._db.delete(b"r:" + seen)  # as a store written by the previous version
    assert store.forget(store.expired_records(today=11), today=11) == 5
    assert store.knows_many([ids[0][0]]) == [False]
    store.close()


def test_expired_records_come_a_bounded_number_at_a_time(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p8")
    for n in range(5):
        h = identity_hash("t", "s", f"b{n}")
        store.committed({}, [(h, 10)], n + 1, [(changelog.seen_key(n), 10, [h])])
    assert len(store.expired_records(today=11, limit=2)) == 2
    assert len(store.expired_records(today=11)) == 5
    store.close()

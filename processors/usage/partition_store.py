"""A local RocksDB copy of one changelog partition: counters and remembered identities.

It is only a cache of the changelog, which is the truth. Writes land here after the Kafka
transaction that carried them committed, in one RocksDB write batch together with the next
changelog offset to read (the checkpoint). A crash between commit and this write leaves an
older checkpoint, and restoring replays the tail of the changelog: every changelog record is
an absolute value or a set insertion, so replaying it again changes nothing. Identities stay
on disk, so memory does not grow with the number of remembered ids.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

from processors.usage.core.aggregations import GroupState
from processors.usage.core.counting import Counter, Group
from processors.usage.core.sequences import SourceSequence
from schemas import counter_changelog_v1 as changelog
from schemas.counter_changelog_v1 import CounterKey, GroupKey, GroupValue

_CHECKPOINT = b"m:checkpoint"
_ID = b"h:"
_COUNTER = b"c:"
#: ``q:`` + changelog key of a defined meter's group -> its changelog value.
_GROUP = b"q:"
#: ``g:`` + changelog key of a producer's sequence state -> its changelog value.
_SEQUENCE = b"g:"
_OFFSET = struct.Struct(">q")
_DAY = struct.Struct(">I")
#: ``x:`` + expiry day + changelog key of a seen-ids record: which records expire when.
_EXPIRY = b"x:"
#: ``d:`` + changelog key of a seen-ids record -> its expiry day (to drop the index entry).
_SEEN_DAY = b"d:"
#: ``r:`` + changelog key of a seen-ids record -> its identities, 16 bytes each: forgetting
#: a record deletes its own identities instead of scanning every remembered one.
_MEMBERS = b"r:"
_IDENTITY = 16


# One block cache and one memtable budget for every partition store of the process, so
# memory stays bounded however many partitions a worker owns and however many ids it
# remembers: 64 MiB of cache (index and bloom-filter blocks included) + 32 MiB of memtables.
_CACHE = Cache(64 * 2**20)
_MEMTABLES = WriteBufferManager.new_write_buffer_manager_with_cache(32 * 2**20, False, _CACHE)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(8 * 2**20)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(_MEMTABLES)
    table = BlockBasedOptions()
    table.set_block_cache(_CACHE)
    # Most lookups are for identities never seen: a bloom filter answers those without
    # reading a data block.
    table.set_bloom_filter(10, False)
    # Filters and indexes stay outside the cache, always in memory: about 1.3 bytes per
    # remembered id (13 MiB for 10 million), where an evicted filter would cost a disk read
    # on every lookup.
    table.set_cache_index_and_filter_blocks(False)
    options.set_block_based_table_factory(table)
    options.set_max_open_files(256)
    return options


def group_of(value: GroupValue) -> Group:
    """A changelog group value as the counter folds it."""
    aggregation, count, total, maximum, latest, distinct = value
    return aggregation, GroupState(count, total, maximum, latest, distinct)


def group_value(group: Group) -> GroupValue:
    aggregation, s = group
    return aggregation, s.count, s.total, s.maximum, s.latest, s.distinct


class PartitionStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), options=_options())
        raw = self._db.get(_CHECKPOINT)
        self.checkpoint: int = _OFFSET.unpack(raw)[0] if raw is not None else 0
        self.counters: dict[CounterKey, Counter] = {}
        for key, value in self._db.items(from_key=_COUNTER):
            if not isinstance(key, bytes) or not key.startswith(_COUNTER):
                break
            if not isinstance(value, bytes):
                raise TypeError("counter value in the local store is not bytes")
            ckey, count, total = changelog.parse_counter(key[2:], value)
            self.counters[ckey] = Counter(count, total)
        self.groups: dict[GroupKey, Group] = {}
        for key, value in self._db.items(from_key=_GROUP):
            if not isinstance(key, bytes) or not key.startswith(_GROUP):
                break
            if not isinstance(value, bytes):
                raise TypeError("group value in the local store is not bytes")
            gkey, gvalue = changelog.parse_group(key[2:], value)
            self.groups[gkey] = group_of(gvalue)
        self.sequences: dict[changelog.SequenceKey, SourceSequence] = {}
        for key, value in self._db.items(from_key=_SEQUENCE):
            if not isinstance(key, bytes) or not key.startswith(_SEQUENCE):
                break
            if not isinstance(value, bytes):
                raise TypeError("sequence value in the local store is not bytes")
            skey, state = changelog.parse_sequence(key[2:], value)
            self.sequences[skey] = SourceSequence.of(state)
        self._restore_batch: WriteBatch | None = None
        #: Expiry days indexed in the restore batch not written yet (``_unindex``).
        self._batch_days: dict[bytes, bytes] = {}

    def knows(self, identity: bytes) -> bool:
        return self._db.get(_ID + identity) is not None

    def knows_many(self, identities: list[bytes]) -> list[bool]:
        values = self._db.get([_ID + h for h in identities])
        if not isinstance(values, list):
            raise TypeError("multi-get did not answer with a list")
        return [v is not None for v in values]

    # Restoring from the changelog -------------------------------------------------------

    def restore(self, key: bytes, value: bytes | None, offset: int) -> None:
        """Apply one changelog record read at ``offset``."""
        if self._restore_batch is None:
            self._restore_batch = WriteBatch(raw_mode=True)
        batch = self._restore_batch
        if key[:1] == changelog.COUNTER:
            if value is None:
                batch.delete(_COUNTER + key)
                self.counters.pop(changelog.parse_counter_key(key), None)
            else:
                ckey, count, total = changelog.parse_counter(key, value)
                batch.put(_COUNTER + key, value)
                self.counters[ckey] = Counter(count, total)
        elif key[:1] == changelog.SEEN and value is not None:
            latest = 0
            members = []
            for identity, day in changelog.parse_seen(value):
                batch.put(_ID + identity, _DAY.pack(day))
                latest = max(latest, day)
                members.append(identity)
            self._index(batch, key, latest, members)
            self._batch_days[key] = _DAY.pack(latest)
        elif key[:1] == changelog.SEEN:
            self._unindex(batch, key)
        elif key[:1] == changelog.SEQUENCE and value is not None:
            skey, state = changelog.parse_sequence(key, value)
            batch.put(_SEQUENCE + key, value)
            self.sequences[skey] = SourceSequence.of(state)
        elif key[:1] == changelog.GROUP and value is not None:
            gkey, gvalue = changelog.parse_group(key, value)
            batch.put(_GROUP + key, value)
            self.groups[gkey] = group_of(gvalue)
        self.checkpoint = offset + 1
        if len(batch) >= 5000:
            self.flush_restore()

    def flush_restore(self, checkpoint: int | None = None) -> None:
        if checkpoint is not None:
            self.checkpoint = max(self.checkpoint, checkpoint)
        batch = self._restore_batch or WriteBatch(raw_mode=True)
        batch.put(_CHECKPOINT, _OFFSET.pack(self.checkpoint))
        self._db.write(batch)
        self._restore_batch = None
        self._batch_days.clear()

    # After a committed transaction ------------------------------------------------------

    def committed(
        self,
        changed: dict[CounterKey, Counter],
        new_ids: Iterable[tuple[bytes, int]],
        next_offset: int,
        seen_records: Iterable[tuple[bytes, int, list[bytes]]] = (),
        sequences: dict[changelog.SequenceKey, SourceSequence] | None = None,
        groups: dict[GroupKey, Group] | None = None,
    ) -> None:
        """Apply a committed transaction: counters, identities, the seen-ids records
        (changelog key, latest expiry day, identities) and the sequence states it wrote."""
        batch = WriteBatch(raw_mode=True)
        for skey, state in (sequences or {}).items():
            batch.put(_SEQUENCE + changelog.sequence_key(skey),
                      changelog.sequence_value(state.as_tuple()))
            self.sequences[skey] = state
        for seen, latest, members in seen_records:
            self._index(batch, seen, latest, members)
        for key, counter in changed.items():
            batch.put(_COUNTER + changelog.counter_key(key),
                      changelog.counter_value(counter.count, counter.total))
            self.counters[key] = counter
        for gkey, group in (groups or {}).items():
            batch.put(_GROUP + changelog.group_key(gkey), changelog.group_value(
                group_value(group)))
            self.groups[gkey] = group
        for identity, day in new_ids:
            batch.put(_ID + identity, _DAY.pack(day))
        self.checkpoint = max(self.checkpoint, next_offset)
        batch.put(_CHECKPOINT, _OFFSET.pack(self.checkpoint))
        self._db.write(batch)

    # Forgetting identities past their expiry --------------------------------------------

    def _index(self, batch: WriteBatch, seen_key: bytes, day: int,
               members: list[bytes]) -> None:
        batch.put(_EXPIRY + _DAY.pack(day) + seen_key, b"")
        batch.put(_SEEN_DAY + seen_key, _DAY.pack(day))
        batch.put(_MEMBERS + seen_key, b"".join(members))

    def _unindex(self, batch: WriteBatch, seen_key: bytes) -> None:
        # The record may have been indexed in the same restore batch (a seen-ids record
        # and its tombstone restored together): its day is then not in the database yet.
        day = self._batch_days.pop(seen_key, None) or self._db.get(_SEEN_DAY + seen_key)
        if isinstance(day, bytes):
            batch.delete(_EXPIRY + day + seen_key)
        batch.delete(_SEEN_DAY + seen_key)
        batch.delete(_MEMBERS + seen_key)

    def expired_records(self, today: int, limit: int | None = None) -> list[bytes]:
        """Changelog keys of seen-ids records whose every identity expired before ``today``,
        oldest first, at most ``limit`` of them."""
        found: list[bytes] = []
        for key, _value in self._db.items(from_key=_EXPIRY):
            if not isinstance(key, bytes) or not key.startswith(_EXPIRY):
                break
            if _DAY.unpack(key[2:6])[0] >= today or (limit is not None and len(found) >= limit):
                break
            found.append(key[6:])
        return found

    def forget(self, seen_keys: list[bytes], today: int) -> int:
        """After the tombstones for ``seen_keys`` committed: drop them and their identities
        that expired before ``today``; return how many identities were dropped.

        Each record's own identities are deleted (``r:``), so the work is proportional to
        what expires, never to what is remembered. A record stored before its members were
        (no ``r:`` entry) falls back to one scan of every identity.
        """
        batch = WriteBatch(raw_mode=True)
        dropped = 0
        scan = False
        for seen in seen_keys:
            members = self._db.get(_MEMBERS + seen)
            if not isinstance(members, bytes):
                scan = True
            else:
                ids: list[str | int | float | bytes | bool] = [
                    _ID + members[i:i + _IDENTITY] for i in range(0, len(members), _IDENTITY)]
                days = self._db.get(ids) if ids else []
                if not isinstance(days, list):
                    raise TypeError("multi-get did not answer with a list")
                for entry, day in zip(ids, days, strict=True):
                    if isinstance(day, bytes) and _DAY.unpack(day)[0] < today:
                        batch.delete(entry)
                        dropped += 1
            self._unindex(batch, seen)
        if scan:
            for entry, value in self._db.items(from_key=_ID):
                if not isinstance(entry, bytes) or not entry.startswith(_ID):
                    break
                if isinstance(value, bytes) and _DAY.unpack(value)[0] < today:
                    batch.delete(entry)
                    dropped += 1
        self._db.write(batch)
        return dropped

    def close(self) -> None:
        self._db.close()

"""``counter-changelog.v1`` records: the counting worker's state, committed with its offsets.

The changelog is compacted and co-partitioned with ``usage.v1``: partition p holds the state
of source partition p, so a worker that takes over p restores p's state from one partition.

Two kinds of record, told apart by the key's first byte:

- ``C`` + JSON ``[tenant, period, meter]`` -> JSON ``{"n": count, "s": "sum"}``: the absolute
  counter after a transaction (the latest value wins under compaction).
- ``D`` + 8-byte big-endian source offset of a batch's first record + 2-byte chunk number
  -> the ids first seen in that batch, as 20-byte entries: 16-byte id hash + 4-byte
  big-endian expiry day. A batch's ids are split into chunks of at most ``SEEN_CHUNK``
  entries so that no record exceeds Kafka's default 1 MB message size.
- ``M`` + JSON ``[tenant, period, meter, [[dimension, value], ...]]`` -> JSON
  ``{"a": aggregation, "n": count, "s": "sum", "m": "max" | null,
  "l": [time_ms, "identity hash hex", "value"] | null, "u": distinct}``: a defined meter's
  group (docs/meters.md), absolute after a transaction. Its unique_count values are
  remembered as identities in ``D`` records (hashes namespaced apart from event ids).
- ``G`` + JSON ``[tenant, source]`` -> JSON ``{"low": n, "high": n, "gaps": [[a, b], ...],
  "overflow": bool}``: a producer's sequence numbers seen so far, as the lowest, the highest
  and the missing ranges between them (absolute, the latest value wins).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from decimal import Decimal

import orjson

COUNTER = b"C"
SEEN = b"D"
SEQUENCE = b"G"
GROUP = b"M"
_ENTRY = struct.Struct(">16sI")
_OFFSET = struct.Struct(">qH")
SEEN_CHUNK = 25_000

CounterKey = tuple[str, str, str]  # tenant, period, meter
#: tenant, period, meter, ((dimension, value), ...)
GroupKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
#: aggregation, count, sum, max, (time_ms, identity hash, value) of the latest, distinct.
GroupValue = tuple[str, int, Decimal, Decimal | None, tuple[int, bytes, Decimal] | None, int]


def group_key(key: GroupKey) -> bytes:
    tenant, period, meter, group = key
    return GROUP + orjson.dumps([tenant, period, meter, [list(p) for p in group]])


def parse_group_key(key: bytes) -> GroupKey:
    tenant, period, meter, group = orjson.loads(key[1:])
    return str(tenant), str(period), str(meter), tuple((str(d), str(v)) for d, v in group)


def group_value(value: GroupValue) -> bytes:
    aggregation, count, total, maximum, latest, distinct = value
    return orjson.dumps({
        "a": aggregation, "n": count, "s": str(total),
        "m": None if maximum is None else str(maximum),
        "l": None if latest is None else [latest[0], latest[1].hex(), str(latest[2])],
        "u": distinct})


def parse_group(key: bytes, value: bytes) -> tuple[GroupKey, GroupValue]:
    doc = orjson.loads(value)
    latest = doc.get("l")
    return parse_group_key(key), (
        str(doc["a"]), int(doc["n"]), Decimal(doc["s"]),
        None if doc.get("m") is None else Decimal(doc["m"]),
        None if latest is None else (int(latest[0]), bytes.fromhex(latest[1]),
                                     Decimal(latest[2])),
        int(doc.get("u", 0)))


def counter_key(key: CounterKey) -> bytes:
    return COUNTER + orjson.dumps(list(key))


def counter_value(count: int, total: Decimal) -> bytes:
    return orjson.dumps({"n": count, "s": str(total)})


def parse_counter_key(key: bytes) -> CounterKey:
    tenant, period, meter = orjson.loads(key[1:])
    return str(tenant), str(period), str(meter)


def parse_counter(key: bytes, value: bytes) -> tuple[CounterKey, int, Decimal]:
    doc = orjson.loads(value)
    return parse_counter_key(key), int(doc["n"]), Decimal(doc["s"])


def seen_key(first_source_offset: int, chunk: int = 0) -> bytes:
    return SEEN + _OFFSET.pack(first_source_offset, chunk)


def seen_value(entries: list[tuple[bytes, int]]) -> bytes:
    return b"".join(_ENTRY.pack(h, day) for h, day in entries)


def parse_seen(value: bytes) -> Iterator[tuple[bytes, int]]:
    if len(value) % _ENTRY.size:
        raise ValueError("seen-ids value is not a whole number of entries")
    yield from _ENTRY.iter_unpack(value)


SequenceKey = tuple[str, str]  # tenant, source
#: low, high, missing ranges (inclusive), whether more gaps opened than are kept.
SequenceState = tuple[int, int, tuple[tuple[int, int], ...], bool]


def sequence_key(key: SequenceKey) -> bytes:
    return SEQUENCE + orjson.dumps(list(key))


def sequence_value(state: SequenceState) -> bytes:
    low, high, gaps, overflow = state
    return orjson.dumps({"low": low, "high": high, "gaps": [list(g) for g in gaps],
                         "overflow": overflow})


def parse_sequence(key: bytes, value: bytes) -> tuple[SequenceKey, SequenceState]:
    tenant, source = orjson.loads(key[1:])
    doc = orjson.loads(value)
    gaps = tuple((int(a), int(b)) for a, b in doc["gaps"])
    return (str(tenant), str(source)), (int(doc["low"]), int(doc["high"]), gaps,
                                        bool(doc.get("overflow", False)))

"""Which offsets may be committed when records finish out of order.

Records of one partition are handled concurrently (a slow webhook receiver must not hold up
the next delivery), but a committed offset promises that everything before it is done.
The tracker commits up to the oldest record still in flight, never past it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._in_flight: dict[P, set[int]] = {}
        self._next: dict[P, int] = {}
        self._committed: dict[P, int] = {}

    def started(self, partition: P, offset: int) -> None:
        self._in_flight.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: P, offset: int) -> None:
        self._in_flight.get(partition, set()).discard(offset)

    def forget(self, partition: P) -> None:
        """The partition was revoked: its records will be handled by another consumer."""
        self._in_flight.pop(partition, None)
        self._next.pop(partition, None)
        self._committed.pop(partition, None)

    def rewind(self, partition: P, offset: int) -> None:
        """The consumer will read ``offset`` again (a delayed record was put back)."""
        pending = self._in_flight.get(partition, set())
        self._next[partition] = min(self._next.get(partition, offset), offset,
                                    min(pending, default=offset))

    def committable(self) -> dict[P, int]:
        """Offsets to commit now (the next offset to read), for partitions that moved."""
        out = {}
        for partition, upto in self._next.items():
            pending = self._in_flight.get(partition)
            offset = min(pending) if pending else upto
            if offset > self._committed.get(partition, -1):
                out[partition] = offset
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        self._committed.update(offsets)

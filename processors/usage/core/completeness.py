"""When usage is complete, as pure rules: the stages a snapshot of the pipeline passes, and
how many records a consumer group still has to commit past.

A snapshot taken at an instant ``s`` proves that every event accepted before ``s`` is
counted and mirrored once each stage's consumer group has committed past the high
watermarks recorded for that stage. The stages run in the pipeline's order, and a stage's
watermarks are recorded only when the stage before it has been passed, because a stage's
input is written by the stage before it (the validator writes usage, the counter writes the
changelog). An event is *accepted* when the gateway has answered for it (which it does after
Kafka's acknowledgement) or when it was appended to the ingest topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

#: The stages, in the pipeline's order: (name, the topic its group reads).
STAGES: tuple[tuple[str, str], ...] = (
    ("ingest-validator", "ingest"),
    ("counter", "usage"),
    ("mirror", "changelog"),
)


@dataclass(frozen=True)
class Snapshot:
    """A pipeline snapshot on its way through the stages."""

    #: The instant whose accepted events the snapshot proves counted.
    taken_at: datetime
    #: Index into ``STAGES`` of the stage being waited for (``len(STAGES)``: passed).
    stage: int = 0
    #: High watermarks the stage's group must commit past, by partition.
    targets: Mapping[int, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.stage >= len(STAGES)

    @property
    def stage_name(self) -> str:
        return "complete" if self.passed else STAGES[self.stage][0]


@dataclass(frozen=True)
class BarrierState:
    """What a close barrier knows: the instant it last proved, and what it waits for."""

    complete_through: datetime | None
    #: The stage the current snapshot waits for, and since when (the snapshot's instant).
    stage: str
    waiting_since: datetime
    behind: int


def records_left(committed: Mapping[int, int], low: Mapping[int, int],
                 targets: Mapping[int, int]) -> dict[int, int]:
    """Per partition, how many offsets lie between where the group stands and its target.

    A partition without a committed offset (negative, as Kafka reports it) stands at its
    low watermark, as does one whose committed offset the retention has passed. A partition
    missing from ``committed`` has not been read at all. Partitions with nothing left are
    left out. The offsets left may be transaction markers or aborted records only, which a
    consumer never sees; the caller probes those (``only_markers_between``).
    """
    left: dict[int, int] = {}
    for partition, target in targets.items():
        at = max(committed.get(partition, -1), low.get(partition, 0))
        if at < target:
            left[partition] = target - at
    return left

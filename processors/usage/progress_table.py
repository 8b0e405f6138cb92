"""Cassandra side of the close barrier: one row per billing worker, read by the gateway for
``complete_through`` (``GET /v1/usage``) and for ``meterly billing status``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.cluster import Session

from processors.usage.core.completeness import BarrierState


@dataclass(frozen=True)
class WorkerProgress:
    worker: str
    complete_through: datetime | None
    stage: str
    waiting_since: datetime | None
    behind: int
    closes_waiting: int
    updated_at: datetime | None


class ProgressTable:
    def __init__(self, session: Session, keyspace: str, deployment: str) -> None:
        self._session = session
        self.deployment = deployment
        self._cached: tuple[float, datetime | None] = (float("-inf"), None)
        self._write = session.prepare(
            f"INSERT INTO {keyspace}.pipeline_progress (deployment, worker, complete_through, "
            "stage, waiting_since, behind, closes_waiting, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self._read = session.prepare(
            f"SELECT worker, complete_through, stage, waiting_since, behind, closes_waiting, "
            f"updated_at FROM {keyspace}.pipeline_progress WHERE deployment = ?")

    def write(self, worker: str, state: BarrierState, closes_waiting: int) -> None:
        self._session.execute(self._write, (
            self.deployment, worker, state.complete_through, state.stage, state.waiting_since,
            state.behind, closes_waiting, datetime.now(UTC)))

    def read(self) -> list[WorkerProgress]:
        def utc(moment: datetime | None) -> datetime | None:
            return moment.replace(tzinfo=UTC) if moment is not None else None

        return sorted((WorkerProgress(r.worker, utc(r.complete_through), r.stage or "",
                                      utc(r.waiting_since), r.behind or 0,
                                      r.closes_waiting or 0, utc(r.updated_at))
                       for r in self._session.execute(self._read, (self.deployment,))),
                      key=lambda w: w.worker)

    def complete_through(self, max_age: float = 1.0) -> datetime | None:
        """The latest instant any live billing worker has proven complete (each proves the
        same pipeline, so the latest proof holds for all); read at most every ``max_age``
        seconds."""
        if time.monotonic() - self._cached[0] > max_age:
            known = [w.complete_through for w in self.read() if w.complete_through is not None]
            self._cached = (time.monotonic(), max(known) if known else None)
        return self._cached[1]

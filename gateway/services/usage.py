"""Usage as the API reads it: a tenant's counters per meter for one period, from Cassandra."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime
from processors.kafka.invalid import read_invalid_records
from processors.usage.core.periods import period_bounds, period_of
from processors.usage.ingest_dead_letters import (
    IngestDeadLetter,
    read_ingest_dead_letters,
    replay,
)
from schemas.api_v1 import (
    GapPublic,
    GroupUsagePublic,
    IngestDeadLetterPublic,
    IngestReplay,
    InvalidRecordPublic,
    MeterUsagePublic,
    ReplayResult,
    SourceGapsPublic,
    UsageGapsPublic,
    UsagePublic,
)
from schemas.rfc3339 import time_text
from schemas.topics import INGEST, INGEST_DEAD_LETTER, INVALID_RECORDS

#: How much of an unreadable record's value a listing shows.
PREVIEW_BYTES = 4096


async def read_usage(runtime: Runtime, tenant_id: str, period: str | None) -> UsagePublic:
    period = period or period_of(datetime.now(UTC))
    try:
        period_bounds(period)
    except ValueError as exc:
        raise ProblemError(422, "invalid-period", "Invalid period", str(exc)) from None
    rows = await run_in_threadpool(runtime.usage.read, tenant_id, period)
    groups = await run_in_threadpool(runtime.usage.read_groups, tenant_id, period)
    through = await run_in_threadpool(runtime.progress.complete_through)
    return UsagePublic(
        tenant_id=tenant_id, period=period,
        meters=[MeterUsagePublic(meter=r.meter, count=r.count, sum=str(r.total)) for r in rows],
        groups=[GroupUsagePublic(meter=g.meter, group=dict(g.group),
                                 aggregation=g.aggregation,  # type: ignore[arg-type]
                                 value=f"{g.value:f}", events=g.count) for g in groups],
        complete_through=time_text(through) if through else None,
    )


def _ingest_dead_letters(runtime: Runtime) -> list[IngestDeadLetter]:
    assert runtime.settings.kafka_bootstrap
    return read_ingest_dead_letters(
        runtime.settings.kafka_bootstrap,
        INGEST_DEAD_LETTER.full_name(runtime.settings.topic_prefix))


def _matches(letter: IngestDeadLetter, body: IngestReplay) -> bool:
    return ((body.tenant_id is None or letter.tenant_id == body.tenant_id)
            and (body.reason_contains is None or body.reason_contains in letter.reason))


async def list_ingest_dead_letters(runtime: Runtime, limit: int,
                                   tenant_id: str | None) -> list[IngestDeadLetterPublic]:
    """The newest dead-lettered ingest records, newest first."""
    found = await run_in_threadpool(_ingest_dead_letters, runtime)
    chosen = [d for d in found if tenant_id is None or d.tenant_id == tenant_id][-limit:]
    return [IngestDeadLetterPublic(
        place=d.place, source=d.source, tenant_id=d.tenant_id, reason=d.reason,
        event_id=d.event_id, replayed_from=d.header("meterly-replayed-from"))
        for d in reversed(chosen)]


async def list_invalid_records(runtime: Runtime, limit: int,
                               topic: str | None) -> list[InvalidRecordPublic]:
    """Records no reader could decode (every topic but ingest's), newest first, one per
    source place; ``topic`` (without the deployment prefix) narrows to one topic."""
    assert runtime.settings.kafka_bootstrap
    prefix = runtime.settings.topic_prefix
    found = await run_in_threadpool(read_invalid_records, runtime.settings.kafka_bootstrap,
                                    INVALID_RECORDS.full_name(prefix))
    if topic is not None:
        found = [r for r in found if r.source.rsplit("/", 2)[0] == f"{prefix}{topic}"]
    return [InvalidRecordPublic(
        source=r.source, readers=list(r.readers), reason=r.reason,
        key=r.key.decode("utf-8", "replace") if r.key is not None else None,
        size=len(r.value or b""),
        value_base64=base64.b64encode((r.value or b"")[:PREVIEW_BYTES]).decode(),
        dead_lettered_at=time_text(datetime.fromtimestamp(r.timestamp_ms / 1000, UTC)))
        for r in reversed(found[-limit:])]


async def replay_ingest_dead_letters(runtime: Runtime, body: IngestReplay) -> ReplayResult:
    """Write the matching dead letters back to the ingest topic, to be judged again."""
    assert runtime.settings.kafka_bootstrap
    found = await run_in_threadpool(_ingest_dead_letters, runtime)
    chosen = [d for d in found if _matches(d, body)]
    done = await run_in_threadpool(
        replay, runtime.settings.kafka_bootstrap,
        INGEST.full_name(runtime.settings.topic_prefix), chosen)
    await runtime.audit.record(
        "ingest.dead_letters_replayed", "topic:ingest-dead-letter", body.tenant_id,
        orjson.dumps({"filters": body.model_dump(exclude_none=True),
                      "replayed": done}).decode())
    return ReplayResult(replayed=done)


async def read_gaps(runtime: Runtime, tenant_id: str) -> UsageGapsPublic:
    """The tenant's producers that send ``sequence``, with the numbers that never came."""
    found = await run_in_threadpool(runtime.usage.read_gaps, tenant_id)
    return UsageGapsPublic(
        tenant_id=tenant_id, open_gaps=sum(len(g.gaps) for g in found),
        sources=[SourceGapsPublic(
            source=g.source, lowest=g.low, highest=g.high, missing=g.missing,
            gaps=[GapPublic(first=a, last=b) for a, b in g.gaps], overflow=g.overflow,
            updated_at=time_text(g.updated_at) if g.updated_at else None) for g in found])

"""Usage read API: a tenant's counters per meter for one period (``gateway.services.usage``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.runtime import CurrentTenant, Operator, RuntimeDep
from gateway.services import ingest_credentials
from gateway.services.usage import (
    list_ingest_dead_letters,
    list_invalid_records,
    read_gaps,
    read_usage,
    replay_ingest_dead_letters,
)
from schemas.api_v1 import (
    IngestCredentialsCreate,
    IngestCredentialsCreated,
    IngestCredentialsPublic,
    IngestDeadLetterPublic,
    IngestReplay,
    InvalidRecordPublic,
    ReplayResult,
    UsageGapsPublic,
    UsagePublic,
)

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsagePublic)
async def usage(tenant: CurrentTenant, runtime: RuntimeDep,
                period: str | None = None) -> UsagePublic:
    """The calling tenant's usage for ``period`` (YYYY-MM, UTC; default: the current one)."""
    return await read_usage(runtime, tenant.id, period)


@router.get("/usage/gaps", response_model=UsageGapsPublic)
async def usage_gaps(tenant: CurrentTenant, runtime: RuntimeDep) -> UsageGapsPublic:
    """Producer gap detection: for each ``source`` whose events carry the CloudEvents
    ``sequence`` extension, the lowest and highest number seen and the ranges between them
    that never arrived. A range closes when its events arrive."""
    return await read_gaps(runtime, tenant.id)


@router.get("/admin/ingest/dead-letter", response_model=list[IngestDeadLetterPublic])
async def ingest_dead_letters(runtime: RuntimeDep, _: Operator,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                              tenant_id: str | None = None) -> list[IngestDeadLetterPublic]:
    """Records the ingest validator refused, newest first, with the reason."""
    return await list_ingest_dead_letters(runtime, limit, tenant_id)


@router.post("/admin/ingest/credentials", status_code=201,
             response_model=IngestCredentialsCreated)
async def issue_ingest_credentials(body: IngestCredentialsCreate, runtime: RuntimeDep,
                                   _: Operator) -> IngestCredentialsCreated:
    """Credentials for a producer on the Kafka ingest topic: a Kafka principal that may only
    write that topic (where Meterly manages the cluster's SCRAM users), and an ingest key of
    the tenant that every record carries in its ``meterly-key`` header. The password and the
    key are shown once."""
    return await ingest_credentials.issue(runtime, body.tenant_id, body.name)


@router.get("/admin/ingest/credentials", response_model=list[IngestCredentialsPublic])
async def list_ingest_credentials(runtime: RuntimeDep,
                                  _: Operator) -> list[IngestCredentialsPublic]:
    """Every ingest producer's credentials (never their secrets), oldest first."""
    return ingest_credentials.list_credentials(runtime)


@router.post("/admin/ingest/credentials/{name}/revoke",
             response_model=IngestCredentialsPublic)
async def revoke_ingest_credentials(name: str, runtime: RuntimeDep,
                                    _: Operator) -> IngestCredentialsPublic:
    """Remove the producer's Kafka principal and its ACLs, and revoke its ingest key."""
    return await ingest_credentials.revoke(runtime, name)


@router.get("/admin/invalid-records", response_model=list[InvalidRecordPublic])
async def invalid_records(runtime: RuntimeDep, _: Operator,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                          topic: Annotated[str | None, Query(max_length=200)] = None,
                          ) -> list[InvalidRecordPublic]:
    """Records a worker or gateway could not decode on any topic but the ingest topic
    (whose refusals are under ``/v1/admin/ingest/dead-letter``), newest first: each was
    set aside unchanged in ``invalid-records.v1`` and its reader went on. ``topic``
    (``usage.v1``, ``admin.v1``...) narrows to one topic."""
    return await list_invalid_records(runtime, limit, topic)


@router.post("/admin/ingest/dead-letter/replay", status_code=202,
             response_model=ReplayResult)
async def replay_ingest(body: IngestReplay, runtime: RuntimeDep,
                        _: Operator) -> ReplayResult:
    """Write the matching dead letters back to the ingest topic, as they were sent, to be
    judged again (a record already counted is counted once)."""
    return await replay_ingest_dead_letters(runtime, body)

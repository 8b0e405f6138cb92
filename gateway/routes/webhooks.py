"""Operator API: webhook endpoints, their delivery log, replays and the dead-letter topic
(``gateway.services.webhooks`` does the work).

An endpoint's signing secret (``whsec_...``) is returned once, when the endpoint is created
or its secret rotated. During a rotation both secrets sign every delivery, so receivers can
switch at their own pace.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.runtime import Operator, RuntimeDep
from gateway.services import webhooks
from schemas.api_v1 import (
    DeadLetterPublic,
    DeadLetterReplay,
    DeliveryAttemptPublic,
    ReplayResult,
    SecretRotate,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)

router = APIRouter(prefix="/v1/admin", tags=["webhooks"])


@router.post("/tenants/{tenant_id}/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(tenant_id: str, body: WebhookCreate, runtime: RuntimeDep,
                         _: Operator) -> WebhookCreated:
    """Add an endpoint; the answer holds its signing secret, shown this once."""
    return await webhooks.create_webhook(runtime, tenant_id, body)


@router.get("/tenants/{tenant_id}/webhooks", response_model=list[WebhookPublic])
async def list_webhooks(tenant_id: str, runtime: RuntimeDep,
                        _: Operator) -> list[WebhookPublic]:
    return await webhooks.list_webhooks(runtime, tenant_id)


@router.get("/tenants/{tenant_id}/webhooks/{endpoint_id}", response_model=WebhookPublic)
async def get_webhook(tenant_id: str, endpoint_id: str, runtime: RuntimeDep,
                      _: Operator) -> WebhookPublic:
    return await webhooks.get_webhook(runtime, tenant_id, endpoint_id)


@router.patch("/tenants/{tenant_id}/webhooks/{endpoint_id}", response_model=WebhookPublic)
async def update_webhook(tenant_id: str, endpoint_id: str, body: WebhookUpdate,
                         runtime: RuntimeDep, _: Operator) -> WebhookPublic:
    """Change the URL, event types, description, or enable/disable the endpoint. Enabling
    clears the reason Meterly disabled it."""
    return await webhooks.update_webhook(runtime, tenant_id, endpoint_id, body)


@router.delete("/tenants/{tenant_id}/webhooks/{endpoint_id}", status_code=204)
async def delete_webhook(tenant_id: str, endpoint_id: str, runtime: RuntimeDep,
                         _: Operator) -> None:
    await webhooks.delete_webhook(runtime, tenant_id, endpoint_id)


@router.post("/tenants/{tenant_id}/webhooks/{endpoint_id}/rotate-secret", status_code=201,
             response_model=WebhookCreated)
async def rotate_secret(tenant_id: str, endpoint_id: str, body: SecretRotate,
                        runtime: RuntimeDep, _: Operator) -> WebhookCreated:
    """A new signing secret (shown once); the old ones keep signing for ``overlap_seconds``."""
    return await webhooks.rotate_secret(runtime, tenant_id, endpoint_id, body)


@router.get("/tenants/{tenant_id}/webhooks/{endpoint_id}/deliveries",
            response_model=list[DeliveryAttemptPublic])
async def list_deliveries(
    tenant_id: str, endpoint_id: str, runtime: RuntimeDep, _: Operator,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryAttemptPublic]:
    """Every attempt to this endpoint, newest first: time, status code, latency, error."""
    return await webhooks.list_deliveries(runtime, tenant_id, endpoint_id, limit)


@router.post("/tenants/{tenant_id}/webhooks/{endpoint_id}/deliveries/{message_id}/replay",
             status_code=202, response_model=ReplayResult)
async def replay_delivery(tenant_id: str, endpoint_id: str, message_id: str,
                          runtime: RuntimeDep, _: Operator) -> ReplayResult:
    """Send one message to this endpoint again (same ``webhook-id``, a new attempt series)."""
    return await webhooks.replay_delivery(runtime, tenant_id, endpoint_id, message_id)


@router.get("/webhooks/dead-letter", response_model=list[DeadLetterPublic])
async def list_dead_letters(runtime: RuntimeDep, _: Operator,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100
                            ) -> list[DeadLetterPublic]:
    """The newest dead-lettered deliveries (the last attempt failed, or the endpoint was
    disabled)."""
    return await webhooks.list_dead_letters(runtime, limit)


@router.post("/webhooks/dead-letter/replay", status_code=202, response_model=ReplayResult)
async def replay_dead_letters(body: DeadLetterReplay, runtime: RuntimeDep,
                              _: Operator) -> ReplayResult:
    """Send dead-lettered deliveries again, all of them or those matching the filters. A
    receiver may see a message twice (the same ``webhook-id``), never zero times."""
    return await webhooks.replay_dead_letters(runtime, body)

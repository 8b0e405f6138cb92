"""Webhook endpoints, their delivery log, replays and the dead-letter topic.

An endpoint's signing secret (``whsec_...``) is returned once, when the endpoint is created
or its secret rotated; the admin topic keeps it sealed (``processors.webhooks.core.sealing``).
During a rotation both secrets sign every delivery, so receivers can switch at their own pace.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from gateway.runtime import Runtime, tenant_or_404
from processors.kafka.async_producer import DeliveryFailed
from processors.webhooks.core.sealing import seal
from processors.webhooks.core.signing import new_secret
from processors.webhooks.core.ssrf import UrlRefused, check_url, parse_networks
from processors.webhooks.dead_letters import read_dead_letters
from processors.webhooks.resolver import getaddrinfo
from schemas import webhooks_v1
from schemas.admin_v1 import SigningSecret, WebhookEndpoint
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
from schemas.rfc3339 import now_text, parse_time, time_text
from schemas.topics import WEBHOOK_DEAD_LETTER, WEBHOOK_RETRIES
from schemas.webhooks_v1 import EVENT_TYPES, Delivery, Message

log = logging.getLogger(__name__)



def endpoint_or_404(runtime: Runtime, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = runtime.directory.webhook(endpoint_id)
    if endpoint is None or endpoint.tenant_id != tenant_id or endpoint.deleted:
        raise ProblemError(404, "webhook-not-found", "Webhook endpoint not found",
                           f"tenant {tenant_id} has no webhook endpoint {endpoint_id}")
    return endpoint


async def _checked_url(runtime: Runtime, url: str) -> str:
    """Refuse a URL that is not http(s) or resolves to a non-public address. A host that
    does not resolve yet is accepted (its DNS may come later): the dispatcher resolves it
    through the same guard on every delivery, so it can never reach a refused address."""
    allow = parse_networks(runtime.settings.webhook_allow_networks)
    try:
        await run_in_threadpool(check_url, url, allow, getaddrinfo)
    except UrlRefused as exc:
        raise ProblemError(422, "webhook-url-refused", "Webhook URL refused", str(exc)) from None
    except OSError as exc:
        log.info("webhook host does not resolve yet; accepted", extra={"url": url,
                                                                       "error": str(exc)})
    return url


def _sealed(runtime: Runtime, secret: str, endpoint_id: str) -> SigningSecret:
    """The secret as the admin topic keeps it: sealed under the newest secret key."""
    return SigningSecret(seal(secret, endpoint_id, *runtime.secret_keys.current))


def _event_types(types: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(types)) if types else EVENT_TYPES
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise ProblemError(422, "unknown-event-type", "Unknown event type",
                           f"{', '.join(unknown)}: the event types are {', '.join(EVENT_TYPES)}")
    return chosen


async def webhook_public(runtime: Runtime, endpoint: WebhookEndpoint) -> WebhookPublic:
    health = await run_in_threadpool(runtime.webhooks.health, endpoint.id)
    now = time.time()
    live = [s for s in endpoint.secrets
            if s.expires_at is None or parse_time(s.expires_at).timestamp() > now]
    return WebhookPublic(
        id=endpoint.id, tenant_id=endpoint.tenant_id, url=endpoint.url,
        event_types=list(endpoint.event_types), enabled=endpoint.enabled,
        description=endpoint.description, disabled_reason=endpoint.disabled_reason,
        secrets_in_use=len(live), created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        failing_since=_text(health["failing_since"]),
        last_success_at=_text(health["last_success_at"]),
        last_failure_at=_text(health["last_failure_at"]))


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else time_text(moment)


async def create_webhook(runtime: Runtime, tenant_id: str,
                         body: WebhookCreate) -> WebhookCreated:
    """Add an endpoint; the answer holds its signing secret, shown this once."""
    tenant_or_404(runtime, tenant_id)
    url = await _checked_url(runtime, str(body.url))
    now = now_text()
    secret, endpoint_id = new_secret(), f"we_{secrets.token_hex(8)}"
    endpoint = WebhookEndpoint(
        id=endpoint_id, tenant_id=tenant_id, url=url,
        event_types=_event_types(body.event_types),
        secrets=(_sealed(runtime, secret, endpoint_id),),
        created_at=now, updated_at=now, enabled=body.enabled, description=body.description)
    await runtime.admin_topic.publish(endpoint)
    public = await webhook_public(runtime, endpoint)
    return WebhookCreated(**public.model_dump(), secret=secret)


async def list_webhooks(runtime: Runtime, tenant_id: str) -> list[WebhookPublic]:
    tenant_or_404(runtime, tenant_id)
    endpoints = sorted(runtime.directory.endpoints_of(tenant_id), key=lambda e: e.created_at)
    return [await webhook_public(runtime, e) for e in endpoints]


async def get_webhook(runtime: Runtime, tenant_id: str, endpoint_id: str) -> WebhookPublic:
    return await webhook_public(runtime, endpoint_or_404(runtime, tenant_id, endpoint_id))


async def update_webhook(runtime: Runtime, tenant_id: str, endpoint_id: str,
                         body: WebhookUpdate) -> WebhookPublic:
    """Change the URL, event types, description, or enable/disable the endpoint. Enabling
    clears the reason Meterly disabled it."""
    endpoint = endpoint_or_404(runtime, tenant_id, endpoint_id)
    changes: dict[str, object] = {}
    if body.url is not None:
        changes["url"] = await _checked_url(runtime, str(body.url))
    if body.event_types is not None:
        changes["event_types"] = _event_types(body.event_types)
    if body.description is not None:
        changes["description"] = body.description
    if body.enabled is not None:
        changes["enabled"] = body.enabled
        if body.enabled:
            changes["disabled_reason"] = None
    updated = replace(endpoint, **changes, updated_at=now_text())  # type: ignore[arg-type]
    await runtime.admin_topic.publish(updated)
    return await webhook_public(runtime, updated)


async def delete_webhook(runtime: Runtime, tenant_id: str, endpoint_id: str) -> None:
    endpoint = endpoint_or_404(runtime, tenant_id, endpoint_id)
    await runtime.admin_topic.publish(replace(endpoint, deleted=True, enabled=False,
                                        updated_at=now_text()))


async def rotate_secret(runtime: Runtime, tenant_id: str, endpoint_id: str,
                        body: SecretRotate) -> WebhookCreated:
    """A new signing secret (shown once); the old ones keep signing for ``overlap_seconds``."""
    endpoint = endpoint_or_404(runtime, tenant_id, endpoint_id)
    now = datetime.now(UTC)
    until = time_text(now + timedelta(seconds=body.overlap_seconds))
    kept = tuple(
        SigningSecret(s.secret, s.expires_at or until) for s in endpoint.secrets
        if s.expires_at is None or parse_time(s.expires_at) > now)
    secret = new_secret()
    updated = replace(endpoint, secrets=(_sealed(runtime, secret, endpoint.id), *kept),
                      updated_at=now_text())
    await runtime.admin_topic.publish(updated)
    public = await webhook_public(runtime, updated)
    return WebhookCreated(**public.model_dump(), secret=secret)


async def list_deliveries(runtime: Runtime, tenant_id: str, endpoint_id: str,
                          limit: int = 100) -> list[DeliveryAttemptPublic]:
    """Every attempt to this endpoint, newest first: time, status code, latency, error."""
    endpoint_or_404(runtime, tenant_id, endpoint_id)
    attempts = await run_in_threadpool(runtime.webhooks.attempts, tenant_id, endpoint_id, limit)
    return [DeliveryAttemptPublic(
        message_id=a.message_id, event_type=a.event_type, attempt=a.attempt,
        attempted_at=time_text(a.attempted_at), outcome=a.outcome,  # type: ignore[arg-type]
        status_code=a.status_code,
        latency_ms=a.latency_ms, error=a.error) for a in attempts]


async def _redeliver(runtime: Runtime, deliveries: list[Delivery]) -> None:
    """Send deliveries again from their first attempt, due now (the first retry topic)."""
    topic = WEBHOOK_RETRIES[0].full_name(runtime.settings.topic_prefix)
    now_ms = int(time.time() * 1000)
    try:
        for d in deliveries:
            fresh = replace(d, attempts=0, due_ms=now_ms, last_error=None)
            await runtime.producer.send(topic, webhooks_v1.encode_delivery(fresh),
                                        key=d.endpoint_id.encode())
    except DeliveryFailed as exc:
        raise ProblemError(503, "webhooks-unavailable", "Webhooks unavailable",
                           f"Kafka did not take the replay ({exc}); retry it",
                           headers={"Retry-After": "1"}) from None


async def replay_delivery(runtime: Runtime, tenant_id: str, endpoint_id: str,
                          message_id: str) -> ReplayResult:
    """Send one message to this endpoint again (same ``webhook-id``, a new attempt series)."""
    endpoint = endpoint_or_404(runtime, tenant_id, endpoint_id)
    found = await run_in_threadpool(runtime.webhooks.message, tenant_id, message_id)
    if found is None:
        raise ProblemError(404, "message-not-found", "Message not found",
                           f"tenant {tenant_id} was never sent message {message_id}")
    event_type, body = found
    doc = orjson.loads(body)
    message = Message(message_id, event_type, tenant_id, doc["timestamp"], doc["data"])
    await _redeliver(runtime, [Delivery(message, endpoint.id, 0, 0)])
    await runtime.audit.record("webhook.message_replayed", f"webhook:{endpoint.id}",
                               tenant_id, orjson.dumps({"message_id": message_id}).decode())
    return ReplayResult(replayed=1)


def _dead_letters(runtime: Runtime, limit: int | None) -> list[Delivery]:
    assert runtime.settings.kafka_bootstrap
    return read_dead_letters(runtime.settings.kafka_bootstrap,
                             WEBHOOK_DEAD_LETTER.full_name(runtime.settings.topic_prefix), limit)


def _matches(d: Delivery, body: DeadLetterReplay) -> bool:
    return ((body.tenant_id is None or d.message.tenant_id == body.tenant_id)
            and (body.endpoint_id is None or d.endpoint_id == body.endpoint_id)
            and (body.event_type is None or d.message.type == body.event_type))


async def list_dead_letters(runtime: Runtime, limit: int = 100) -> list[DeadLetterPublic]:
    """The newest dead-lettered deliveries (the last attempt failed, or the endpoint was
    disabled)."""
    found = await run_in_threadpool(_dead_letters, runtime, limit)
    return [DeadLetterPublic(
        message_id=d.message.id, event_type=d.message.type, tenant_id=d.message.tenant_id,
        endpoint_id=d.endpoint_id, attempts=d.attempts, last_error=d.last_error)
        for d in reversed(found)]


async def replay_dead_letters(runtime: Runtime, body: DeadLetterReplay) -> ReplayResult:
    """Send dead-lettered deliveries again, all of them or those matching the filters. A
    receiver may see a message twice (the same ``webhook-id``), never zero times."""
    found = await run_in_threadpool(_dead_letters, runtime, None)
    chosen = list({(d.message.id, d.endpoint_id): d for d in found if _matches(d, body)}
                  .values())
    await _redeliver(runtime, chosen)
    await runtime.audit.record(
        "webhook.dead_letters_replayed", "topic:webhook-dead-letter", body.tenant_id,
        orjson.dumps({"filters": body.model_dump(exclude_none=True),
                      "replayed": len(chosen)}).decode())
    return ReplayResult(replayed=len(chosen))

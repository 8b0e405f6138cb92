"""Usage in: CloudEvents batches (``POST /v1/events``) and metered resources.

An event is ``accepted`` only after Kafka acknowledged the record holding it. ``duplicate``
means this process already accepted that identity (or it repeats earlier in the same
request); a duplicate that reaches Kafka anyway is still counted once by the counting
worker, which deduplicates every identity for at least 35 days.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from gateway.metrics import INGEST_EVENTS, INGEST_REJECTIONS, rejection_reason
from gateway.problems import ProblemError
from gateway.quotas import quota_problem
from gateway.runtime import (
    CurrentTenant,
    IdempotentResponse,
    RuntimeDep,
    body_hash,
    correlation_id,
)
from processors.kafka.async_producer import DeliveryFailed
from processors.runtime.failpoints import failpoint
from processors.usage.core.counting import identity_hash
from processors.usage.core.meters import metered
from processors.usage.core.periods import AcceptanceWindow
from schemas.api_v1 import IngestResult, ResourceResponse
from schemas.cloudevents import METER_PATTERN, EventRejected, to_usage_event
from schemas.usage_v1 import UsageEvent

router = APIRouter(prefix="/v1", tags=["ingest"])
log = logging.getLogger(__name__)

MAX_EVENTS = 1000
BATCH_TYPES = ("application/json", "application/cloudevents-batch+json")
SINGLE_TYPE = "application/cloudevents+json"


#: A quantity's number literal, in document order (``exact_quantities``).
_QUANTITY_LITERAL = re.compile(rb'"quantity"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def exact_quantities(doc: Any, body: bytes) -> bool:
    """Give every float quantity in ``doc`` (parsed by orjson, which reads numbers as
    floats) the exact decimal of its literal in ``body``; False when the literals cannot be
    matched to the quantities one for one (a ``quantity`` key elsewhere in the body, an
    escaped key), and the caller parses the body again with exact decimals.

    Deciding from the literal, not from the float, keeps ``0.30000000000000001`` what it
    is (and refused for its decimals) instead of the float's ``0.3``.
    """
    events = doc if isinstance(doc, list) else [doc]
    slots: list[tuple[dict[str, Any], Any]] = []
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and "quantity" in data:
            value = data["quantity"]
            if isinstance(value, int | float) and not isinstance(value, bool):
                slots.append((data, value))
    if not any(isinstance(value, float) for _data, value in slots):
        return True
    literals = _QUANTITY_LITERAL.findall(body)
    if len(literals) != len(slots):
        return False
    for (data, value), literal in zip(slots, literals, strict=True):
        try:
            exact = Decimal(literal.decode())
        except InvalidOperation:
            return False
        if float(exact) != float(value):
            return False
        if isinstance(value, float):
            data["quantity"] = exact
    return True


def _parse_events(content_type: str, body: bytes) -> list[Any]:
    media = content_type.split(";")[0].strip().lower()
    if media not in (*BATCH_TYPES, SINGLE_TYPE):
        raise ProblemError(415, "unsupported-media-type", "Unsupported media type",
                           f"send {', '.join((*BATCH_TYPES, SINGLE_TYPE))}")
    try:
        doc = orjson.loads(body)
        if not exact_quantities(doc, body):
            # Quantities not matched to their literals: parse again, decimals as Decimal.
            doc = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(400, "malformed-json", "Malformed JSON", str(exc)) from None
    if media == SINGLE_TYPE:
        return [doc]
    if not isinstance(doc, list):
        raise ProblemError(422, "invalid-batch", "Invalid batch",
                           "the body must be a JSON array of CloudEvents")
    if not doc:
        raise ProblemError(422, "invalid-batch", "Invalid batch", "the batch holds no events")
    if len(doc) > MAX_EVENTS:
        raise ProblemError(413, "too-many-events", "Too many events",
                           f"the batch holds {len(doc)} events; the limit is {MAX_EVENTS}")
    return doc


@router.post("/events", response_model=IngestResult,
             responses={200: {"description": "one receipt per event, in order"}})
async def ingest_events(request: Request, tenant: CurrentTenant,
                        runtime: RuntimeDep) -> Response:
    """Report usage as CloudEvents 1.0 (structured JSON): an array, or one event."""
    # Bounded by gateway.guard.RequestGuard (METERLY_MAX_BODY_BYTES) while it was read.
    body = await request.body()
    idem = request.headers.get("idempotency-key")
    idem_slot = (tenant.id, idem) if idem else None
    digest = body_hash(body)
    if idem_slot is not None:
        if idem_slot in runtime.idempotency:
            seen = runtime.idempotency.get(idem_slot)
            if seen is None:
                raise ProblemError(409, "idempotency-in-progress", "Request in progress",
                                   "a request with this Idempotency-Key is still running")
            if seen.body_hash != digest:
                raise ProblemError(422, "idempotency-key-reused", "Idempotency-Key reused",
                                   "this Idempotency-Key was used with a different body")
            return Response(seen.body, seen.status, media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
        runtime.idempotency.put(idem_slot, None)
    try:
        raw_events = _parse_events(request.headers.get("content-type", ""), body)
        result = await _ingest(runtime, tenant.id, raw_events, correlation_id(request))
    except BaseException:
        if idem_slot is not None:
            runtime.idempotency.pop(idem_slot)
        raise
    payload = orjson.dumps(result)
    if idem_slot is not None:
        runtime.idempotency.put(idem_slot, IdempotentResponse(digest, 200, payload))
    return Response(payload, 200, media_type="application/json")


async def _accept(runtime: RuntimeDep, tenant_id: str, events: list[UsageEvent],
                  cid: str, retry: str = "retry the same request: its events keep their "
                  "ids, so none counts twice") -> None:
    """Hand ``events`` to the sink; a Kafka failure becomes a 503 that says what a retry
    does. Kafka may have written a record whose acknowledgement timed out, so the answer
    never claims that nothing was recorded."""
    try:
        await runtime.sink.accept(tenant_id, events, cid)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("usage accepted", extra={"correlation_id": cid, "tenant": tenant_id,
                                               "events": len(events)})
    except DeliveryFailed as exc:
        raise ProblemError(503, "ingest-unavailable", "Ingest unavailable",
                           f"Kafka did not acknowledge the usage events in time ({exc}); "
                           f"some may have been recorded: {retry}",
                           headers={"Retry-After": "1"}) from None


async def _ingest(runtime: RuntimeDep, tenant_id: str, raw_events: list[Any],
                  cid: str) -> dict[str, Any]:
    """Receipts as plain dicts (the ``IngestResult`` schema): this is the hot path, and
    building a model per event would cost more than validating the event."""
    now = datetime.now(UTC)
    window = AcceptanceWindow.at(now, timedelta(seconds=runtime.settings.grace_seconds))
    receipts: list[dict[str, Any]] = []
    accepted: list[tuple[UsageEvent, bytes]] = []
    in_request: set[bytes] = set()
    for raw in raw_events:
        event_id = raw.get("id") if isinstance(raw, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        try:
            event = to_usage_event(raw, now, runtime.settings.require_event_time)
            why = window.rejection(event.time_ms)
            if why:
                raise EventRejected(why)
            # What it adds to the meters in force for its type (docs/meters.md).
            event = metered(event, raw.get("data"), runtime.meter_cache.meters(
                runtime.directory.meters_for_type(event.meter)))
        except EventRejected as exc:
            receipts.append({"id": event_id, "status": "rejected", "reason": str(exc)})
            INGEST_REJECTIONS.labels(rejection_reason(str(exc))).inc()
            continue
        except Exception as exc:  # noqa: BLE001 - one event never fails its batch
            log.warning("unreadable event rejected", extra={"error": repr(exc)})
            receipts.append({"id": event_id, "status": "rejected",
                             "reason": f"unreadable event ({type(exc).__name__})"})
            INGEST_REJECTIONS.labels("unreadable").inc()
            continue
        identity = identity_hash(tenant_id, event.source, event.id)
        if identity in in_request or identity in runtime.recent_ids:
            receipts.append({"id": event.id, "status": "duplicate", "reason": None})
            continue
        in_request.add(identity)
        accepted.append((event, identity))
        receipts.append({"id": event.id, "status": "accepted", "reason": None})
    if accepted:
        # Hard limits refuse the whole request: nothing is accepted, nothing is half-done.
        if exceeded := await runtime.quotas.check(tenant_id, {e.meter for e, _ in accepted}):
            raise quota_problem(exceeded, datetime.now(UTC))
        await _accept(runtime, tenant_id, [e for e, _ in accepted], cid)
        failpoint("gateway.after-ack")  # Kafka acknowledged; the client has no answer yet
        for _, identity in accepted:
            runtime.recent_ids.put(identity, True)
    counts = {s: sum(r["status"] == s for r in receipts) for s in ("accepted", "duplicate",
                                                                     "rejected")}
    for status, n in counts.items():
        if n:
            INGEST_EVENTS.labels(status).inc(n)
    return {"accepted": counts["accepted"], "duplicates": counts["duplicate"],
            "rejected": counts["rejected"], "receipts": receipts}


#: What an Idempotency-Key on a metered resource may hold (it becomes the event's id).
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


@router.api_route("/resources/{name}", methods=["GET", "POST"],
                  response_model=ResourceResponse)
async def metered_resource(name: str, request: Request, tenant: CurrentTenant,
                           runtime: RuntimeDep) -> Response:
    """A metered resource: answers, and records one usage event for meter ``name``.

    Send ``Idempotency-Key`` to make retries count once: the event's id is derived from
    it, so a call whose answer was lost (a timeout, a 503 after Kafka took the record
    anyway) can be repeated with the same key and is counted once. Without it every call
    is a new event.
    """
    if not METER_PATTERN.match(name):
        raise ProblemError(422, "invalid-meter", "Invalid meter name",
                           "a resource name may hold letters, digits, '.', '_', ':' and '-'")
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.match(key):
        raise ProblemError(400, "invalid-idempotency-key", "Invalid Idempotency-Key",
                           "an Idempotency-Key holds 1 to 200 printable ASCII characters")
    if exceeded := await runtime.quotas.check(tenant.id, (name,)):
        raise quota_problem(exceeded, datetime.now(UTC))
    event_id = f"idempotency:{name}:{key}" if key else uuid.uuid4().hex
    event = UsageEvent(id=event_id, source="meterly/gateway", meter=name,
                       time_ms=int(datetime.now(UTC).timestamp() * 1000), quantity=Decimal(1))
    identity = identity_hash(tenant.id, event.source, event.id)
    if key and identity in runtime.recent_ids:
        INGEST_EVENTS.labels("duplicate").inc()
    else:
        await _accept(runtime, tenant.id, [event], correlation_id(request),
                      retry="retry with the same Idempotency-Key and it counts once" if key
                      else "a retry counts again unless the call sends an Idempotency-Key")
        runtime.recent_ids.put(identity, True)
        INGEST_EVENTS.labels("accepted").inc()
    return Response(orjson.dumps({"resource": name, "event_id": event.id, "metered": True}),
                    media_type="application/json")

"""The OpenAPI document, completed: errors, authentication and the event body.

FastAPI documents each route's success and a 422 ``HTTPValidationError`` as JSON. Meterly
answers every error as an RFC 9457 problem (``gateway.problems``), so the document says so:

1. every operation documents ``4XX`` and ``503`` as ``application/problem+json`` (the
   ``Problem`` schema; the types are listed in docs/errors.md), and its 422 as a problem too;
2. the bearer scheme (an operator token or a tenant's API key) is declared and required by
   every ``/v1`` operation except signed download links, which carry their own signature;
3. ``POST /v1/events`` documents its body (a CloudEvent or a batch of them, by media type);
4. an operation served under several methods gets one operationId per method.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.problems import MEDIA_TYPE, TYPE_BASE
from schemas.cloudevents import METER_PATTERN

PROBLEM: dict[str, Any] = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details; branch on `type` (docs/errors.md)",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "example": TYPE_BASE + "rate-limited"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "invalid-request: one entry per field"},
    },
    "additionalProperties": True,
}
CLOUDEVENT: dict[str, Any] = {
    "type": "object", "title": "CloudEvent",
    "description": "CloudEvents 1.0, structured JSON; the meter is `type`, the amount "
                   "`data.quantity` (default 1)",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "source": {"type": "string", "minLength": 1, "maxLength": 1024},
        "type": {"type": "string", "minLength": 1, "maxLength": 256},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string"},
        "sequence": {"type": "string"},
        "data": {"type": "object", "properties": {
            "quantity": {"type": "number", "minimum": 0}}},
    },
}
CLOUDEVENT_EXAMPLE = {"specversion": "1.0", "id": "evt-1", "source": "billing-api",
                      "type": "api.calls", "time": "2026-12-07T10:00:00Z",
                      "data": {"quantity": 1}}
_REF = {"$ref": "#/components/schemas/Problem"}
_ERRORS = {
    "4XX": {"description": "refused: an RFC 9457 problem (docs/errors.md)",
            "content": {MEDIA_TYPE: {"schema": _REF}}},
    "503": {"description": "Kafka or Cassandra unavailable: retry (Retry-After)",
            "content": {MEDIA_TYPE: {"schema": _REF}}},
}
_OPEN = ("/v1/files/",)


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's document) with the four additions above."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    schemas["CloudEvent"] = CLOUDEVENT
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "an operator token (`/v1/admin/...`) or a tenant's API key (`mtr_...`)"}}
    seen: set[str] = set()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "422" in responses:
                responses["422"] = {"description": "invalid request: an RFC 9457 problem",
                                    "content": {MEDIA_TYPE: {"schema": _REF}}}
            for status, answer in _ERRORS.items():
                responses.setdefault(status, answer)
            if path.startswith("/v1/") and not path.startswith(_OPEN):
                operation["security"] = [{"bearer": []}]
            op_id = operation.get("operationId")
            if op_id in seen:
                operation["operationId"] = f"{op_id}_{method}"
            seen.add(operation.get("operationId", ""))
            if path == "/v1/resources/{name}":
                # Checked by the route itself (422 invalid-meter), documented here.
                for parameter in operation.get("parameters", []):
                    if parameter.get("name") == "name":
                        parameter["schema"] = {**parameter["schema"],
                                               "pattern": METER_PATTERN.pattern}
            if path == "/v1/events" and method == "post":
                # Each event is judged on its own and answered in its receipt (a rejected
                # one does not refuse the batch), so the body's schema holds only what
                # refuses a whole request: not an array of 1 to 1,000 objects.
                event = {"type": "object", "description": "a CloudEvent (schema CloudEvent); "
                         "one that breaks its rules gets a rejected receipt",
                         "example": CLOUDEVENT_EXAMPLE}
                batch = {"type": "array", "items": event, "minItems": 1, "maxItems": 1000}
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": batch},
                    "application/cloudevents-batch+json": {"schema": batch},
                    "application/cloudevents+json": {"schema": event}}}
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""RFC 9457 problem details: every error the gateway returns is ``application/problem+json``.

``type`` is a stable URI per kind of problem (documented in docs/errors.md), so clients can
branch on it; ``title`` is short and fixed per type; ``detail`` explains this occurrence.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.metrics import PROBLEMS

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://meterly.dev/problems/"


class ProblemError(Exception):
    def __init__(self, status: int, kind: str, title: str, detail: str,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, kind: str, title: str, detail: str,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    PROBLEMS.labels(kind).inc()
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_HTTP_KINDS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.title, exc.detail, exc.headers,
                                **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        return problem_response(422, "invalid-request", "Invalid request",
                                "the request does not match the API schema", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Still a problem document (and the error logged with the request's correlation
        # id), never a text/plain 500; shared connections are left as they are.
        cid = request.headers.get("x-correlation-id")
        log.error("unhandled error", exc_info=exc,
                  extra={"path": request.url.path, "correlation_id": cid})
        return problem_response(500, "internal-error", "Internal error",
                                "the request failed on the server; it may be retried",
                                correlation_id=cid)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route with this path only; a path
            # served by several routes (GET and PATCH of a tenant) allows all of theirs.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, kind, title, str(exc.detail), headers)


def allowed_methods(request: Request) -> list[str]:
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return sorted(methods)

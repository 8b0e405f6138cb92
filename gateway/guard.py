"""Bound and authenticate every request before any route reads or parses its body.

FastAPI reads and parses a route's body before it runs the route's dependencies, so
authentication in a dependency comes too late to protect memory: an anonymous 200 MiB body
used to be read and parsed in full before the 401. ``RequestGuard``, a plain ASGI
middleware (no task or stream per request on the ingest path), does for each request:

1. A declared ``Content-Length`` over the limit (``METERLY_MAX_BODY_BYTES``, 1 MiB) is
   answered 413 at once, before anything else.
2. Under ``/v1/`` (signed file links excepted), the ``Authorization`` header is
   authenticated (``gateway.runtime.authenticate``: failed attempts throttled per address
   and key prefix, tenant keys rate limited); a refusal is answered without reading the
   body. The principal is left in the request's state for the routes' dependencies,
   which check that it may use the route (operator or tenant).
3. The body is read, counting bytes as they arrive: past the limit (a chunked body that
   declared no length), 413 without reading on. Then the route runs on the body read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import ProblemError, problem_response
from gateway.runtime import Runtime, authenticate, remember

_PUBLIC = ("/v1/files/",)


def _too_large(limit: int, declared: int | None = None) -> ProblemError:
    size = f"the body is {declared} bytes" if declared is not None else "the body exceeds it"
    return ProblemError(413, "payload-too-large", "Payload too large",
                        f"{size}; the limit is {limit} bytes", limit=limit)


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._guard(scope, receive)
        except ProblemError as exc:
            answer = problem_response(exc.status, exc.kind, exc.title, exc.detail,
                                      exc.headers, **exc.extra)
            await answer(scope, receive, send)
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _guard(self, scope: Scope, receive: Receive) -> bytes | None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_body:
            raise _too_large(self.max_body, int(declared))
        path: str = scope["path"]
        if path.startswith("/v1/") and not path.startswith(_PUBLIC):
            runtime: Runtime = scope["app"].state.runtime
            client = scope.get("client")
            principal = authenticate(runtime, headers.get(b"authorization", b"").decode(
                "latin-1"), client[0] if client else "?")
            remember(scope, principal)
        if declared in (b"", b"0") and b"transfer-encoding" not in headers:
            return None  # no body: nothing to read
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away; the route sees the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _too_large(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

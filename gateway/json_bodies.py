"""The API reads JSON bodies only, and says so: a 415 problem naming the header to send.

A request under ``/v1/`` that carries a body with a ``Content-Type`` that is not JSON
(``application/json`` or any ``application/*+json``) is answered 415 before any route runs.
The usual cause is ``curl -d``, which labels its body ``application/x-www-form-urlencoded``;
without this, such a request fails as a schema error that does not say why. A body without
any ``Content-Type`` is read as JSON, as FastAPI does. The console's forms live under
``/console`` and are not affected.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.problems import problem_response

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return b"transfer-encoding" in headers


class JsonBodies:
    """A plain ASGI middleware (no task or stream per request on the ingest path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] in _WITH_BODY
                and scope["path"].startswith("/v1/")):
            headers = dict(scope["headers"])
            content_type = headers.get(b"content-type")
            if content_type is not None and _has_body(headers) \
                    and not is_json(content_type.decode("latin-1")):
                answer = problem_response(
                    415, "unsupported-media-type", "Unsupported media type",
                    f"this API reads JSON, and the body was sent as "
                    f"{content_type.decode('latin-1')!r}: send it with "
                    "'Content-Type: application/json' (with curl: --json '{...}')",
                    supported=["application/json", "application/*+json"])
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

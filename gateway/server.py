"""The gateway's HTTP protocol: uvicorn's httptools protocol with deadlines on reading.

uvicorn closes idle keep-alive connections but puts no limit on how long a client may take
to send a request's headers or body, so a client that opens connections and trickles bytes
into them ("slowloris") holds them for ever; the security review held 1,500 that way. Here:

1. From the moment a connection opens, or the first byte of a next request arrives, the
   request line and headers must be complete within ``METERLY_HEADER_TIMEOUT_SECONDS``.
2. From then on, the body must be complete within ``METERLY_BODY_TIMEOUT_SECONDS``.
3. A request that misses its deadline has its connection closed (the route, if one was
   running, sees the client disconnect). Responses are not limited: a route that takes its
   time is the route's business, and a finished request disarms the deadline.

``meterly gateway`` runs uvicorn with ``http="gateway.server:DeadlineHttpToolsProtocol"``,
and ``limit_concurrency`` (``METERLY_MAX_CONNECTIONS``), past which uvicorn answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from processors.runtime.settings import get_settings

log = logging.getLogger(__name__)
CUT = Counter("meterly_http_connections_cut_total",
              "connections closed for sending a request too slowly", ["part"])


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_timeout = settings.header_timeout_seconds
        self._body_timeout = settings.body_timeout_seconds
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            CUT.labels(part).inc()
            log.info("connection cut: request %s not received in time", part,
                     extra={"client": str(self.client), "part": part})
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self._header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._arm(self._body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

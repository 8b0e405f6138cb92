"""A real aiohttp webhook receiver on loopback for tests: it can be down, fail, or be slow."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

Mode = Literal["ok", "fail", "slow", "huge", "drip"]


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``start()``/``stop()`` bring the listening socket up and down on a fixed port."""

    port: int = 0
    mode: Mode = "ok"
    slow_seconds: float = 3.0
    #: "huge": a 200 answer this long; "drip": a 200 answer a byte every 0.25 s this long.
    huge_bytes: int = 400 * 10**6
    drip_seconds: float = 30.0
    received: list[Received] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(time.monotonic(), dict(request.headers), body))
        if self.mode == "fail":
            return web.Response(status=500, text="receiver error")
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.mode in ("huge", "drip"):
            return await self._stream(request)
        return web.Response(status=204)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(status=200)
        huge = self.mode == "huge"
        if huge:
            answer.content_length = self.huge_bytes
        await answer.prepare(request)
        block = b"x" * 2**20 if huge else b"."
        rounds = self.huge_bytes // len(block) if huge else int(self.drip_seconds * 4)
        try:
            for _ in range(rounds):
                await answer.write(block)
                if not huge:
                    await asyncio.sleep(0.25)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return answer

    def _call(self, coro: object) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def start(self) -> None:
        async def up() -> None:
            app = web.Application()
            app.router.add_post("/hooks", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._call(up())

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

        self._call(down())

    def close(self) -> None:
        self.stop()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)

    def ids(self) -> set[str]:
        return {r.headers["webhook-id"] for r in self.received}

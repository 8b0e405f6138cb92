"""The gateway's FastAPI application: one server on port 3000 for API and console."""

from __future__ import annotations

import html

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.health import Dependencies
from ops.settings import Settings, get_settings

_HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Meterly</title>
<style>body{{font:16px system-ui,sans-serif;margin:3rem auto;max-width:40rem;color:#222}}
.ok{{color:#16794c}}.bad{{color:#b42318}}code{{background:#f3f3f3;padding:0 .3em}}</style>
</head><body><h1>Meterly</h1>
<p>Exactly-once usage metering and billing.</p>
<p>Status: <strong class="{cls}">{status}</strong></p>
<ul>{items}</ul>
<p>Kafka <code>{kafka}</code> &middot; Cassandra <code>{cassandra}</code></p>
<p><a href="/docs">API reference</a> &middot; <a href="/readyz">/readyz</a>
 &middot; <a href="/metrics">/metrics</a></p>
</body></html>"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.kafka_bootstrap or not settings.cassandra_hosts:
        raise RuntimeError(
            "the gateway needs METERLY_KAFKA_BOOTSTRAP and METERLY_CASSANDRA_HOSTS; "
            "`meterly run` sets them after provisioning"
        )
    kafka_bootstrap, cassandra_hosts = settings.kafka_bootstrap, settings.cassandra_hosts
    deps = Dependencies(kafka_bootstrap, cassandra_hosts)
    app = FastAPI(title="Meterly", version="0.1.0")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        problems = await deps.problems()
        body = {"status": "ready" if not problems else "not ready", "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        problems = await deps.problems()
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        items = items or "<li>Kafka and Cassandra answer</li>"
        return _HOME.format(
            cls="ok" if not problems else "bad",
            status="ready" if not problems else "not ready",
            items=items,
            kafka=html.escape(kafka_bootstrap),
            cassandra=html.escape(cassandra_hosts),
        )

    return app

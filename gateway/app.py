"""The gateway's FastAPI application: one server on port 3000 for API and console."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import console, console_oidc, openapi, pages, problems
from gateway.audit import AuditedTopic, AuditLog
from gateway.auth_throttle import FailureThrottle
from gateway.guard import RequestGuard
from gateway.health import Dependencies
from gateway.json_bodies import JsonBodies
from gateway.quotas import Quotas
from gateway.rate_limit import RateLimiter
from gateway.recent import TenantResponses
from gateway.routes import (
    admin,
    files,
    ingest,
    invoices,
    meters,
    operators,
    plans,
    usage,
    webhooks,
)
from gateway.runtime import IdempotentResponse, Runtime
from gateway.usage_sink import UsageSink
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.async_producer import AsyncProducer
from processors.runtime import keyring, logs
from processors.runtime.operator_token import read_admin_token
from processors.runtime.settings import Settings, get_settings
from processors.tenants.audit_store import AuditStore
from processors.tenants.console_sessions import SessionStore
from processors.tenants.follower import follow_admin
from processors.usage.mirror_table import UsageTable
from processors.usage.progress_table import ProgressTable
from processors.webhooks.store import WebhookStore
from schemas.topics import ADMIN, USAGE
from storage.cassandra import connect
from storage.object_store import open_object_store


class RateLimitHeaders:
    """Adds the RateLimit-* headers the auth dependency computed to every answer.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a stream per
    request on the ingest hot path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get("rate_headers")
                if extra:
                    headers = MutableHeaders(scope=message)
                    for name, value in extra.items():
                        if name not in headers:
                            headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _answer_bytes(answer: IdempotentResponse | None) -> int:
    return len(answer.body) if answer is not None else 0


def _voided(invoices: InvoiceStore, tenant_id: str, invoice_id: str) -> bool:
    doc = invoices.get(tenant_id, invoice_id)
    return doc is not None and doc.voided_at is not None


def create_app(settings: Settings | None = None) -> FastAPI:
    # uvicorn's worker processes (METERLY_GATEWAY_PROCESSES > 1) start fresh interpreters
    # that call this factory: configure their JSON logs here, not only in the parent.
    logs.configure("gateway")
    settings = settings or get_settings()
    kafka_bootstrap, cassandra_hosts = settings.kafka_bootstrap, settings.cassandra_hosts
    if not kafka_bootstrap or not cassandra_hosts:
        raise RuntimeError(
            "the gateway needs METERLY_KAFKA_BOOTSTRAP and METERLY_CASSANDRA_HOSTS; "
            "`meterly run` sets them after provisioning"
        )
    admin_token = read_admin_token(settings)
    deps = Dependencies(kafka_bootstrap, cassandra_hosts, settings.cassandra_security)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = AsyncProducer(kafka_bootstrap)
        directory, admin_topic = follow_admin(
            kafka_bootstrap, ADMIN.full_name(settings.topic_prefix), producer)
        admin_topic.start()
        cluster, session = connect(cassandra_hosts, security=settings.cassandra_security)
        links = keyring.load(settings, "links")
        objects = open_object_store(settings, settings.public_base_url, links.current[1])
        app.state.object_store, app.state.link_secrets = objects, links.secrets
        invoice_store = InvoiceStore(session, settings.cassandra_keyspace)
        app.state.voided = functools.partial(_voided, invoice_store)
        usage_table = UsageTable(session, settings.cassandra_keyspace)
        audit_log = AuditLog(AuditStore(session, settings.cassandra_keyspace))
        app.state.runtime = Runtime(
            settings=settings, admin_token=admin_token, producer=producer,
            session_keys=keyring.load(settings, "sessions"),
            secret_keys=keyring.load(settings, "secrets"),
            directory=directory, admin_topic=AuditedTopic(admin_topic, directory, audit_log),
            audit=audit_log,
            sessions=SessionStore(session, settings.cassandra_keyspace, console.SESSION_SECONDS),
            progress=ProgressTable(session, settings.cassandra_keyspace, settings.topic_prefix),
            sink=UsageSink(producer, USAGE.full_name(settings.topic_prefix)),
            usage=usage_table,
            limiter=RateLimiter(settings.gateway_processes),
            invoices=invoice_store, objects=objects,
            quotas=Quotas(directory, usage_table),
            webhooks=WebhookStore(session, settings.cassandra_keyspace),
            idempotency=TenantResponses(settings.idempotency_bytes_per_tenant,
                                        settings.idempotency_bytes, _answer_bytes),
            address_failures=FailureThrottle(settings.auth_failures_per_minute,
                                             settings.auth_failures_per_minute),
            prefix_failures=FailureThrottle(max(1, settings.auth_failures_per_minute // 2),
                                            max(1, settings.auth_failures_per_minute // 2)),
        )
        try:
            yield
        finally:
            admin_topic.stop()
            producer.close()
            cluster.shutdown()

    app = FastAPI(title="Meterly", version="0.1.0", lifespan=lifespan,
                  description="Exactly-once usage metering and billing.",
                  docs_url=None, redoc_url=None)
    problems.install(app)
    pages.install(app)
    openapi.install(app)
    app.include_router(ingest.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(plans.router)
    app.include_router(meters.router)
    app.include_router(invoices.router)
    app.include_router(files.router)
    app.include_router(webhooks.router)
    app.include_router(operators.router)
    app.include_router(console.router)
    app.include_router(console_oidc.router)

    app.add_middleware(RateLimitHeaders)
    app.add_middleware(JsonBodies)
    app.add_middleware(RequestGuard, max_body=settings.max_body_bytes)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        problems_found = await deps.problems()
        body = {"status": "ready" if not problems_found else "not ready",
                "problems": problems_found}
        return JSONResponse(body, status_code=200 if not problems_found else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)

    @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
    async def status_page() -> HTMLResponse:
        return pages.render("status.html", title="Status", signed_in=False,
                            problems=await deps.problems(), kafka=kafka_bootstrap,
                            cassandra=cassandra_hosts)

    return app

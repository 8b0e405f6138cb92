"""The web console on :3000: server-rendered pages over the same functions as the API.

The operator signs in with the operator token; the session is a signed, HttpOnly,
SameSite=Strict cookie valid for 12 hours (the token itself is never stored in the browser).
Every form posts to the console, which calls the same services as the operator API
(``gateway.services``), so the console validates and records exactly what the API does.
Nothing loads from a CDN.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway import pages
from gateway.charts import daily_bars, days_of
from gateway.problems import ProblemError
from gateway.runtime import Runtime, RuntimeDep, tenant_or_404
from gateway.services import invoices, tenants, webhooks
from gateway.services.usage import read_gaps
from processors.tenants.core import keys
from processors.usage.core.periods import period_bounds, period_of
from schemas.admin_v1 import TenantStatus
from schemas.api_v1 import (
    DeadLetterReplay,
    KeyCreate,
    KeyRotate,
    TenantCreate,
    WebhookCreate,
    WebhookUpdate,
)
from schemas.currencies import CURRENCIES

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "meterly_console"
SESSION_SECONDS = 12 * 3600


def _session_key(runtime: Runtime) -> bytes:
    return hashlib.sha256(b"meterly-console\x00" + runtime.admin_token.encode()).digest()


def _session_cookie(runtime: Runtime) -> str:
    issued = str(int(time.time()))
    sig = hmac.new(_session_key(runtime), issued.encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{sig}"


def _signed_in(request: Request, runtime: Runtime) -> bool:
    issued, _, sig = request.cookies.get(COOKIE, "").partition(".")
    if not issued.isdigit() or time.time() - int(issued) > SESSION_SECONDS:
        return False
    want = hmac.new(_session_key(runtime), issued.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)


def _same_origin(request: Request) -> bool:
    """Forms only from the console's own pages (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    return not origin or origin.split("://", 1)[-1].split("/", 1)[0] == host


def _page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    return pages.render(
        name, status, signed_in=context.pop("signed_in", True),
        notice=request.query_params.get("notice"),
        error=context.pop("error", None) or request.query_params.get("error"), **context)


def _back(path: str, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    query = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def _guard(request: Request, runtime: Runtime, post: bool = False) -> Response | None:
    if not _signed_in(request, runtime):
        return RedirectResponse("/console/login", status_code=303)
    if post and not _same_origin(request):
        return HTMLResponse("cross-site form refused", status_code=403)
    return None


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _page("login.html", request, title="Sign in", signed_in=False)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep,
                token: Annotated[str, Form()]) -> Response:
    subject, now = f"console:{request.client.host if request.client else '?'}", time.monotonic()
    wait = runtime.address_failures.retry_after(subject, now)
    if wait is not None:
        refused = _page("login.html", request, status=429, title="Sign in", signed_in=False,
                        error=f"Too many failed sign-ins from this address; try again in "
                        f"{wait} s.")
        refused.headers["Retry-After"] = str(wait)
        return refused
    if not keys.same_token(token.strip(), runtime.admin_token):
        runtime.address_failures.failed(subject, now)
        return _page("login.html", request, status=401, title="Sign in", signed_in=False,
                     error="That is not the operator token.")
    answer = RedirectResponse("/console", status_code=303)
    answer.set_cookie(COOKIE, _session_cookie(runtime), max_age=SESSION_SECONDS,
                      httponly=True, samesite="strict", path="/console")
    return answer


@router.post("/logout")
async def logout() -> Response:
    answer = RedirectResponse("/console/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/console")
    return answer


@router.get("", response_class=HTMLResponse)
async def tenants_page(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime)) is not None:
        return refused
    tenants = sorted(runtime.directory.tenants(), key=lambda t: t.created_at, reverse=True)
    plans = runtime.directory.plan_names()
    return _page("tenants.html", request, title="Tenants", tenants=tenants, plans=plans,
                 currencies=CURRENCIES)


@router.post("/tenants")
async def create_tenant(request: Request, runtime: RuntimeDep,
                        name: Annotated[str, Form()], billing_email: Annotated[str, Form()],
                        currency: Annotated[str, Form()],
                        plan: Annotated[str, Form()] = "") -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    try:
        body = TenantCreate(name=name, billing_email=billing_email, currency=currency,
                            plan=plan or None)
        made = await tenants.create_tenant(runtime, body)
    except ProblemError as exc:
        return _back("/console", error=exc.detail)
    except ValueError as exc:
        return _back("/console", error=str(exc).splitlines()[0])
    return _back(f"/console/tenants/{made.id}", notice=f"Tenant {made.name} created.")


@router.post("/tenants/{tenant_id}/status/{action}")
async def tenant_action(tenant_id: str, action: str, request: Request,
                        runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    if action not in ("suspend", "reactivate"):
        return HTMLResponse("unknown action", status_code=404)
    status: TenantStatus = "suspended" if action == "suspend" else "active"
    await tenants.set_status(runtime, tenant_id, status)
    return _back("/console", notice=f"Tenant {tenant_id} is {status}.")


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse)
async def tenant_page(tenant_id: str, request: Request, runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime)) is not None:
        return refused
    return await _tenant_view(request, runtime, tenant_id, None)


async def _tenant_view(request: Request, runtime: Runtime, tenant_id: str,
                       new_key: str | None, new_secret: str | None = None) -> Response:
    tenant = tenant_or_404(runtime, tenant_id)
    keys = tenants.list_keys(runtime, tenant_id)
    period = period_of(datetime.now(UTC))
    start, end = period_bounds(period)
    daily = await run_in_threadpool(runtime.usage.read_daily, tenant_id, period)
    totals = {u.meter: u.total for u in await run_in_threadpool(
        runtime.usage.read, tenant_id, period)}
    days = days_of(start.date(), end.date())
    charts = [{"meter": meter, "total": f"{totals.get(meter, 0):f}",
               "svg": daily_bars([(d, q) for d, _c, q in points], days)}
              for meter, points in sorted(daily.items())]
    history = await invoices.tenant_invoices(runtime, tenant_id)
    try:
        upcoming = await invoices.upcoming(runtime, tenant_id)
    except ProblemError:
        upcoming = None
    preview_id = request.query_params.get("preview")
    preview = next((i.id for i in history if i.id == preview_id and i.pdf_url), None)
    gaps = await read_gaps(runtime, tenant_id)
    hooks = []
    for endpoint in await webhooks.list_webhooks(runtime, tenant_id):
        deliveries = await webhooks.list_deliveries(runtime, tenant_id, endpoint.id, 20)
        hooks.append({**endpoint.model_dump(), "deliveries": deliveries})
    return _page("tenant.html", request, title=tenant.name, tenant=tenant, keys=keys,
                 new_key=new_key, new_secret=new_secret, period=period, charts=charts,
                 invoices=history, upcoming=upcoming, preview=preview, webhooks=hooks,
                 gaps=gaps)


@router.get("/tenants/{tenant_id}/invoices/{inv_id}.pdf")
async def invoice_pdf(tenant_id: str, inv_id: str, request: Request, runtime: RuntimeDep,
                      download: bool = False) -> Response:
    """The invoice's PDF from the console's own origin, whatever the object store (an S3
    link would be another origin, which the pages' Content-Security-Policy does not frame)."""
    if (refused := _guard(request, runtime)) is not None:
        return refused
    doc = await invoices.invoice_or_404(runtime, tenant_id, inv_id)
    if doc.pdf_key is None:
        return HTMLResponse("this invoice has no PDF yet", status_code=409)
    data = await run_in_threadpool(runtime.objects.get, doc.pdf_key)
    disposition = "attachment" if download else "inline"
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'{disposition}; filename="{doc.number or doc.id}.pdf"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.post("/tenants/{tenant_id}/keys")
async def create_key(tenant_id: str, request: Request, runtime: RuntimeDep,
                     name: Annotated[str, Form()] = "default") -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    made = await tenants.create_key(runtime, tenant_id, KeyCreate(name=name or "default").name)
    # Shown once, in this answer only: never in a URL (history, logs, Referer).
    return await _tenant_view(request, runtime, tenant_id, made.key)


@router.post("/tenants/{tenant_id}/keys/{key_id}/{action}")
async def key_action(tenant_id: str, key_id: str, action: str, request: Request,
                     runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    if action == "revoke":
        await tenants.revoke_key(runtime, tenant_id, key_id)
        return _back(f"/console/tenants/{tenant_id}", notice="Key revoked.")
    if action == "rotate":
        made = await tenants.rotate_key(runtime, tenant_id, key_id, KeyRotate().overlap_seconds)
        return await _tenant_view(request, runtime, tenant_id, made.key)
    return HTMLResponse("unknown action", status_code=404)


@router.post("/tenants/{tenant_id}/webhooks")
async def create_webhook(tenant_id: str, request: Request, runtime: RuntimeDep,
                         url: Annotated[str, Form()]) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    try:
        made = await webhooks.create_webhook(
            runtime, tenant_id, WebhookCreate.model_validate({"url": url}))
    except ProblemError as exc:
        return _back(f"/console/tenants/{tenant_id}", error=exc.detail)
    except ValueError as exc:
        return _back(f"/console/tenants/{tenant_id}", error=str(exc).splitlines()[0])
    # The secret is shown once, in this answer only.
    return await _tenant_view(request, runtime, tenant_id, None, made.secret)


@router.post("/tenants/{tenant_id}/webhooks/{endpoint_id}/{action}")
async def webhook_action(tenant_id: str, endpoint_id: str, action: str, request: Request,
                         runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    if action not in ("enable", "disable"):
        return HTMLResponse("unknown action", status_code=404)
    await webhooks.update_webhook(runtime, tenant_id, endpoint_id,
                                  WebhookUpdate(enabled=action == "enable"))
    return _back(f"/console/tenants/{tenant_id}", notice=f"Endpoint {action}d.")


@router.post("/tenants/{tenant_id}/webhooks/{endpoint_id}/replay/{message_id}")
async def replay(tenant_id: str, endpoint_id: str, message_id: str, request: Request,
                 runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    await webhooks.replay_delivery(runtime, tenant_id, endpoint_id, message_id)
    return _back(f"/console/tenants/{tenant_id}", notice=f"Message {message_id} replayed.")


@router.get("/dead-letter", response_class=HTMLResponse)
async def dead_letter_page(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime)) is not None:
        return refused
    dead = await webhooks.list_dead_letters(runtime, 200)
    return _page("dead_letter.html", request, title="Dead letters", dead=dead)


@router.post("/dead-letter/replay")
async def replay_dead_letters(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := _guard(request, runtime, post=True)) is not None:
        return refused
    done = await webhooks.replay_dead_letters(runtime, DeadLetterReplay())
    return _back("/console/dead-letter", notice=f"Replayed {done.replayed} deliveries.")

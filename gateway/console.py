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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway import pages
from gateway.audit import ACTOR
from gateway.charts import daily_bars, days_of
from gateway.problems import ProblemError
from gateway.runtime import Runtime, RuntimeDep, operator_actor, tenant_or_404
from gateway.services import invoices, tenants, webhooks
from gateway.services import operators as operator_services
from gateway.services.usage import read_gaps
from processors.tenants.console_sessions import ConsoleSession
from processors.tenants.core import keys, operators
from processors.tenants.core.operators import Actor
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


def _sign(key: bytes, session_id: str) -> str:
    return hmac.new(key, b"meterly-console-session-v1\n" + session_id.encode(),
                    hashlib.sha256).hexdigest()


def _session_cookie(runtime: Runtime, session_id: str) -> str:
    """``<session id>.<HMAC>`` under the newest session key (``processors.runtime.keyring``),
    a key of its own: neither the operator token nor the link keys can be worked out
    from a cookie, nor a cookie from them. The session itself is kept in Cassandra
    (``processors.tenants.console_sessions``), so signing out ends it everywhere."""
    return f"{session_id}.{_sign(runtime.session_keys.current[1], session_id)}"


async def _session(request: Request, runtime: Runtime) -> ConsoleSession | None:
    """The request's live session: signed by a session key, stored, not signed out, not
    older than SESSION_SECONDS, and its operator not revoked since."""
    session_id, _, sig = request.cookies.get(COOKIE, "").partition(".")
    if not session_id or len(session_id) > 64 or not any(
            hmac.compare_digest(_sign(key, session_id), sig)
            for key in runtime.session_keys.secrets):
        return None
    found = await run_in_threadpool(runtime.sessions.get, session_id)
    if found is None or found.revoked_at is not None or \
            (datetime.now(UTC) - found.created_at).total_seconds() > SESSION_SECONDS:
        return None
    if not _still_operator(runtime, found.actor):
        return None
    return found


def _still_operator(runtime: Runtime, actor: Actor) -> bool:
    if actor.id == operators.BOOTSTRAP_ID:
        return runtime.directory.operator(operators.BOOTSTRAP_ID) is None
    current = runtime.directory.operator(actor.id)
    return current is not None and current.revoked_at is None


def secure(request: Request, runtime: Runtime) -> bool:
    """Cookies are ``Secure`` whenever the console is reached over TLS: directly, or behind
    a proxy whose public URL (``METERLY_PUBLIC_URL``) is https."""
    return request.url.scheme == "https" or \
        runtime.settings.public_base_url.startswith("https://")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower-case and without a default
    port; None for anything else (``null``, a relative path, another scheme)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def same_origin(origin: str | None, referer: str | None, accepted: Iterable[str]) -> bool:
    """A form is from the console's own pages only when the browser says so: its ``Origin``
    (every current browser sends one on a POST), or failing that its ``Referer``, names one
    of the ``accepted`` origins, scheme and port included. Neither header: refused."""
    sent = origin if origin else referer
    if not sent:
        return False
    seen = origin_of(sent)
    return seen is not None and seen in {origin_of(a) for a in accepted}


def _same_origin(request: Request, runtime: Runtime) -> bool:
    """Forms only from the console's own pages (the cookie is SameSite=Strict too): the
    origin the request came to, or the public URL (``METERLY_PUBLIC_URL``) in front of it."""
    here = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return same_origin(request.headers.get("origin"), request.headers.get("referer"),
                       (here, runtime.settings.public_base_url))


def _page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    return pages.render(
        name, status, signed_in=context.pop("signed_in", True),
        notice=request.query_params.get("notice"),
        error=context.pop("error", None) or request.query_params.get("error"), **context)


def _back(path: str, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    query = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


async def _guard(request: Request, runtime: Runtime, post: bool = False) -> Response | None:
    """None when the request may go on: a live session and, for a form, the console's own
    origin and a role that may change things (every console form takes the admin role;
    read-only and billing operators see every page)."""
    session = await _session(request, runtime)
    if session is None:
        return RedirectResponse("/console/login", status_code=303)
    ACTOR.set(session.actor)
    if post and not _same_origin(request, runtime):
        return HTMLResponse("cross-site form refused", status_code=403)
    if post and session.actor.role != "admin":
        return _page("refused.html", request, status=403, title="Not allowed",
                     error=f"Signed in as {session.actor.name} ({session.actor.role}): "
                     "changes in the console take the admin role.")
    return None


def login_page_response(request: Request, runtime: Runtime, status: int = 200,
                        error: str | None = None) -> HTMLResponse:
    """The sign-in page (with "Sign in with SSO" when OpenID Connect is configured)."""
    return _page("login.html", request, status=status, title="Sign in", signed_in=False,
                 error=error, sso=bool(runtime.settings.oidc_issuer))


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    return login_page_response(request, runtime)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep,
                token: Annotated[str, Form()]) -> Response:
    if not _same_origin(request, runtime):
        return HTMLResponse("cross-site form refused", status_code=403)
    subject, now = f"console:{request.client.host if request.client else '?'}", time.monotonic()
    wait = runtime.address_failures.retry_after(subject, now)
    if wait is not None:
        refused = login_page_response(request, runtime, 429, "Too many failed sign-ins from "
                                      f"this address; try again in {wait} s.")
        refused.headers["Retry-After"] = str(wait)
        return refused
    actor = _token_actor(runtime, token.strip())
    if actor is None:
        runtime.address_failures.failed(subject, now)
        return login_page_response(request, runtime, 401, "That is not an operator token.")
    return await signed_in_as(request, runtime, actor)


def _token_actor(runtime: Runtime, token: str) -> Actor | None:
    """The operator ``token`` signs in as: a named operator token, or the bootstrap token
    unless it was revoked."""
    if token.startswith(operators.TOKEN_PREFIX):
        try:
            return operator_actor(runtime, token)
        except ProblemError:
            return None
    if keys.same_token(token, runtime.admin_token) and \
            runtime.directory.operator(operators.BOOTSTRAP_ID) is None:
        return operators.BOOTSTRAP
    return None


async def signed_in_as(request: Request, runtime: Runtime, actor: Actor) -> Response:
    """Start a console session for ``actor``: stored, audited, and its cookie set."""
    made = await run_in_threadpool(runtime.sessions.create, actor)
    ACTOR.set(actor)
    await runtime.audit.record("console.signed_in", f"operator:{actor.id}", None)
    answer = RedirectResponse("/console", status_code=303)
    answer.set_cookie(COOKIE, _session_cookie(runtime, made.id), max_age=SESSION_SECONDS,
                      httponly=True, samesite="strict", path="/console",
                      secure=secure(request, runtime))
    return answer


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    if not _same_origin(request, runtime):
        return HTMLResponse("cross-site form refused", status_code=403)
    session = await _session(request, runtime)
    if session is not None:
        # Ended on the server: the cookie, if it was copied, no longer signs anyone in.
        await run_in_threadpool(runtime.sessions.revoke, session.id)
        ACTOR.set(session.actor)
        await runtime.audit.record("console.signed_out", f"operator:{session.actor.id}", None)
    answer = RedirectResponse("/console/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/console")
    return answer


@router.get("", response_class=HTMLResponse)
async def tenants_page(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime)) is not None:
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
    if (refused := await _guard(request, runtime, post=True)) is not None:
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
    if (refused := await _guard(request, runtime, post=True)) is not None:
        return refused
    if action not in ("suspend", "reactivate"):
        return HTMLResponse("unknown action", status_code=404)
    status: TenantStatus = "suspended" if action == "suspend" else "active"
    await tenants.set_status(runtime, tenant_id, status)
    return _back("/console", notice=f"Tenant {tenant_id} is {status}.")


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse)
async def tenant_page(tenant_id: str, request: Request, runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime)) is not None:
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
    if (refused := await _guard(request, runtime)) is not None:
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
    if (refused := await _guard(request, runtime, post=True)) is not None:
        return refused
    made = await tenants.create_key(runtime, tenant_id, KeyCreate(name=name or "default").name)
    # Shown once, in this answer only: never in a URL (history, logs, Referer).
    return await _tenant_view(request, runtime, tenant_id, made.key)


@router.post("/tenants/{tenant_id}/keys/{key_id}/{action}")
async def key_action(tenant_id: str, key_id: str, action: str, request: Request,
                     runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime, post=True)) is not None:
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
    if (refused := await _guard(request, runtime, post=True)) is not None:
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
    if (refused := await _guard(request, runtime, post=True)) is not None:
        return refused
    if action not in ("enable", "disable"):
        return HTMLResponse("unknown action", status_code=404)
    await webhooks.update_webhook(runtime, tenant_id, endpoint_id,
                                  WebhookUpdate(enabled=action == "enable"))
    return _back(f"/console/tenants/{tenant_id}", notice=f"Endpoint {action}d.")


@router.post("/tenants/{tenant_id}/webhooks/{endpoint_id}/replay/{message_id}")
async def replay(tenant_id: str, endpoint_id: str, message_id: str, request: Request,
                 runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime, post=True)) is not None:
        return refused
    await webhooks.replay_delivery(runtime, tenant_id, endpoint_id, message_id)
    return _back(f"/console/tenants/{tenant_id}", notice=f"Message {message_id} replayed.")


@router.get("/dead-letter", response_class=HTMLResponse)
async def dead_letter_page(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime)) is not None:
        return refused
    dead = await webhooks.list_dead_letters(runtime, 200)
    return _page("dead_letter.html", request, title="Dead letters", dead=dead)


@router.post("/dead-letter/replay")
async def replay_dead_letters(request: Request, runtime: RuntimeDep) -> Response:
    if (refused := await _guard(request, runtime, post=True)) is not None:
        return refused
    done = await webhooks.replay_dead_letters(runtime, DeadLetterReplay())
    return _back("/console/dead-letter", notice=f"Replayed {done.replayed} deliveries.")


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, runtime: RuntimeDep, cursor: str | None = None) -> Response:
    if (refused := await _guard(request, runtime)) is not None:
        return refused
    try:
        page = await operator_services.audit_page(runtime, 100, cursor, None, None)
    except ProblemError as exc:
        return _back("/console/audit", error=exc.detail)
    return _page("audit.html", request, title="Audit log", entries=page.data,
                 next_cursor=page.next_cursor)

"""The console's "Sign in with SSO": OpenID Connect, authorization code flow with PKCE.

``GET /console/oidc/start`` sends the browser to the identity provider; the provider sends
it back to ``GET /console/oidc/callback``, which checks the flow
(``processors.tenants.core.oidc_flow``) and the ID token (``gateway.oidc``) and signs the
operator registered under the token's verified e-mail address in, with that operator's
role. Refusals are shown on the sign-in page and counted by the sign-in throttle.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway import console
from gateway.oidc import OidcClient
from gateway.runtime import Runtime, RuntimeDep
from processors.tenants.core import oidc_flow
from processors.tenants.core.oidc_flow import FlowError
from processors.tenants.core.operators import Actor

router = APIRouter(prefix="/console/oidc", include_in_schema=False)
FLOW_COOKIE = "meterly_oidc"


def _client(request: Request, runtime: Runtime) -> OidcClient | None:
    if not runtime.settings.oidc_issuer or not runtime.settings.oidc_client_id:
        return None
    client: OidcClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        client = request.app.state.oidc = OidcClient(runtime.settings)
    return client


def _refused(request: Request, runtime: Runtime, why: str, status: int = 403) -> HTMLResponse:
    subject = f"console:{request.client.host if request.client else '?'}"
    runtime.address_failures.failed(subject, time.monotonic())
    answer = console.login_page_response(request, runtime, status, f"Sign-in refused: {why}")
    answer.delete_cookie(FLOW_COOKIE, path="/console/oidc")
    return answer


@router.get("/start")
async def start(request: Request, runtime: RuntimeDep) -> Response:
    client = _client(request, runtime)
    if client is None:
        return console.login_page_response(request, runtime, 404,
                                           "Single sign-on is not configured.")
    try:
        provider = await client.provider()
    except FlowError as exc:
        return console.login_page_response(request, runtime, 502, str(exc))
    flow = oidc_flow.begin()
    answer = RedirectResponse(oidc_flow.authorization_url(
        provider.authorization_endpoint, client.client_id, client.redirect_uri, client.scopes,
        flow), status_code=303)
    # SameSite=Lax: the provider's redirect back is a top-level cross-site navigation.
    answer.set_cookie(FLOW_COOKIE, oidc_flow.seal_flow(flow, runtime.session_keys.current[1]),
                      max_age=oidc_flow.FLOW_SECONDS, httponly=True, samesite="lax",
                      path="/console/oidc", secure=console.secure(request, runtime))
    return answer


@router.get("/callback")
async def callback(request: Request, runtime: RuntimeDep, code: str | None = None,
                   state: str | None = None, error: str | None = None,
                   error_description: str | None = None) -> Response:
    client = _client(request, runtime)
    if client is None:
        return console.login_page_response(request, runtime, 404,
                                           "Single sign-on is not configured.")
    subject = f"console:{request.client.host if request.client else '?'}"
    wait = runtime.address_failures.retry_after(subject, time.monotonic())
    if wait is not None:
        return console.login_page_response(request, runtime, 429, f"Too many failed sign-ins "
                                           f"from this address; try again in {wait} s.")
    if error is not None:
        return _refused(request, runtime, f"the identity provider says {error}"
                        + (f": {error_description[:200]}" if error_description else ""))
    if not code or not state or len(code) > 2048 or len(state) > 256:
        return _refused(request, runtime, "the identity provider sent no code", 400)
    try:
        flow = oidc_flow.open_flow(request.cookies.get(FLOW_COOKIE, ""),
                                   runtime.session_keys.secrets, state, time.time())
        claims = await client.verify(await client.exchange(code, flow.verifier))
        email = oidc_flow.check_claims(claims, (await client.provider()).issuer,
                                       client.client_id, flow)
    except FlowError as exc:
        return _refused(request, runtime, str(exc))
    found = next((o for o in runtime.directory.operators()
                  if o.email == email and o.revoked_at is None), None)
    if found is None:
        return _refused(request, runtime, f"no operator signs in as {email}; an admin adds "
                        "one with POST /v1/admin/operators {\"email\": ...}")
    answer = await console.signed_in_as(request, runtime,
                                        Actor("operator", found.id, found.name, found.role))
    answer.delete_cookie(FLOW_COOKIE, path="/console/oidc")
    return answer

"""The gateway's HTML: the console's templates, the API reference at ``/docs``, and the static
files they load, all from Meterly's own origin.

Every page is sent with a Content-Security-Policy that allows scripts, styles, frames,
connections and form posts to its own origin only (and ``data:`` images, which Swagger UI's
stylesheet uses for its icons): no CDN, no inline script, no third-party code on the origin
that holds the console's session. Swagger UI comes from the pinned ``fastapi-offline``
package; its start-up script is a file of ours (``gateway/static/``), since an inline script
would need the policy loosened. There is no ``/redoc``: Redoc injects its styles inline and
stops under this policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "frame-src 'self'",
    "worker-src 'self'",
    "frame-ancestors 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
))
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_OWN_STATIC = Path(__file__).parent / "static"
_DOCS_STATIC = Path(fastapi_offline.__file__).parent / "static"

templates = Environment(loader=PackageLoader("gateway", "templates"),
                        autoescape=select_autoescape(["html"]))


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status,
                        headers=PAGE_HEADERS)


router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    return render("docs.html", title="API reference")


def install(app: FastAPI) -> None:
    """Serve the pages above and their static files (the app is made with docs_url=None)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=_OWN_STATIC), name="static")
    app.mount("/docs/assets", StaticFiles(directory=_DOCS_STATIC), name="docs-assets")

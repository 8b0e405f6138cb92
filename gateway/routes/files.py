"""Expiring download links of the local object store: ``GET /v1/files/{key}``.

A link (``storage.object_store.LocalObjectStore.link``) carries ``expires`` (Unix seconds)
and ``signature`` (HMAC-SHA256 of key and expiry, ``storage.signed_links``); the link itself
is the credential, so no API key is asked for. Links to S3 objects are presigned by S3 and
never reach this route.

Wiring: the route reads the store and the signing secret from the application's state, so
the app that includes ``router`` must set, before serving (e.g. in its lifespan)::

    app.state.object_store = open_object_store(settings, base_url, secret)  # an ObjectStore
    app.state.link_secrets = keys.secrets  # bytes, newest first (processors.runtime.keyring)
    app.state.voided = is_voided  # optional: (tenant_id, invoice_id) -> bool, blocking

and install ``gateway.problems`` so failures are RFC 9457 problems: 403 ``link-expired``
or ``link-invalid``, 404 ``file-not-found``, 410 ``invoice-voided`` (a link to an invoice's
PDF once the invoice is voided; the voided copy, stamped VOID, keeps its own links).
A link that claims to last longer than ``MAX_LINK_LIFETIME`` is refused as invalid even when
its signature matches, so a leaked signing key cannot mint links that outlive its rotation.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.problems import ProblemError
from processors.billing.core.pdf_keys import invoice_of
from storage import signed_links
from storage.object_store import MAX_LINK_LIFETIME, ObjectNotFoundError, ObjectStore

router = APIRouter(prefix="/v1", tags=["files"])


def _invalid(detail: str) -> ProblemError:
    return ProblemError(403, "link-invalid", "Invalid download link", detail)


@router.get("/files/{key:path}", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def download(request: Request, key: str, expires: str | None = None,
                   signature: str | None = None) -> Response:
    """The object behind a signed download link, while the link lasts."""
    if expires is None or signature is None:
        raise _invalid("the link lacks its expires or signature parameter")
    # Twelve digits reach the year 33658; longer text is no time (and int() would balk).
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
        raise _invalid("the link's expires parameter is not a Unix time")
    expires_at = int(expires)
    secrets: tuple[bytes, ...] = request.app.state.link_secrets
    now = time.time()
    why = signed_links.verify_any(key, expires_at, signature, secrets, now,
                                  MAX_LINK_LIFETIME.total_seconds())
    if why == "expired":
        raise ProblemError(403, "link-expired", "Download link expired",
                           "this link has expired; ask for a new one")
    if why == "too long":
        raise _invalid("the link claims to last longer than any link Meterly signs (7 days)")
    if why is not None:
        raise _invalid("the link's signature does not match its file and expiry")
    pdf = invoice_of(key)
    voided = getattr(request.app.state, "voided", None)
    if pdf is not None and not pdf.void and voided is not None and \
            await run_in_threadpool(voided, pdf.tenant_id, pdf.invoice_id):
        raise ProblemError(410, "invoice-voided", "Invoice voided",
                           f"invoice {pdf.invoice_id} was voided, so links to its PDF no longer "
                           "work; the invoice's pdf_url now gives the copy stamped VOID")
    store: ObjectStore = request.app.state.object_store
    try:
        data = await run_in_threadpool(store.get, key)
    except (ObjectNotFoundError, ValueError):
        raise ProblemError(404, "file-not-found", "File not found",
                           "no file is stored under this link") from None
    name = key.rsplit("/", 1)[-1]
    media_type = "application/pdf" if name.lower().endswith(".pdf") else \
        "application/octet-stream"
    return Response(data, media_type=media_type, headers={
        # Key characters are restricted to [A-Za-z0-9._/-]: the name needs no escaping.
        "Content-Disposition": f'inline; filename="{name}"',
        # Cached by the browser only, and no longer than the link is valid.
        "Cache-Control": f"private, max-age={max(0, expires_at - int(now))}",
    })

"""GET /v1/files/{key}: signed links of the local object store, served or refused as problems."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.problems import MEDIA_TYPE, TYPE_BASE, install
from gateway.routes import files
from storage.object_store import LocalObjectStore
from storage.signed_links import sign

SECRET = b"test-link-secret-0123456789abcdef"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
KEY = "invoices/ten_1/MTR-2026-000042.pdf"


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects", "http://testserver/", SECRET)


@pytest.fixture
def client(store: LocalObjectStore) -> TestClient:
    app = FastAPI()
    install(app)
    app.include_router(files.router)
    app.state.object_store = store
    app.state.link_secrets = (SECRET,)
    return TestClient(app)


def _path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "http"
    assert parts.netloc == "testserver"
    return f"{parts.path}?{parts.query}"


def _problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["type"] == TYPE_BASE + kind
    assert body["status"] == status


def test_a_valid_link_serves_the_pdf(store: LocalObjectStore, client: TestClient) -> None:
    store.put(KEY, PDF, "application/pdf")
    link = store.link(KEY, timedelta(minutes=10))
    assert link.startswith("http://testserver/v1/files/invoices/ten_1/MTR-2026-000042.pdf?")
    response = client.get(_path(link))
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="MTR-2026-000042.pdf"'
    cache = response.headers["cache-control"]
    assert cache.startswith("private, max-age=")
    assert 590 <= int(cache.split("=")[1]) <= 600


def test_other_files_are_octet_streams(store: LocalObjectStore, client: TestClient) -> None:
    store.put("exports/usage.csv", b"a,b\n", "text/csv")
    response = client.get(_path(store.link("exports/usage.csv", timedelta(seconds=30))))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"a,b\n"


def test_an_expired_link_is_a_403_problem(store: LocalObjectStore, client: TestClient) -> None:
    store.put(KEY, PDF, "application/pdf")
    expires = int(time.time()) - 1
    response = client.get(f"/v1/files/{KEY}",
                          params={"expires": expires, "signature": sign(KEY, expires, SECRET)})
    _problem(response, 403, "link-expired")


@pytest.mark.parametrize("tamper", ["key", "expiry", "signature", "secret", "missing"])
def test_a_tampered_link_is_a_403_problem(store: LocalObjectStore, client: TestClient,
                                          tamper: str) -> None:
    store.put(KEY, PDF, "application/pdf")
    other = "invoices/ten_2/MTR-2026-000042.pdf"
    store.put(other, b"%PDF- someone else's invoice", "application/pdf")
    expires = int(time.time()) + 600
    signature = sign(KEY, expires, SECRET)
    key, params = KEY, {"expires": str(expires), "signature": signature}
    if tamper == "key":
        key = other
    elif tamper == "expiry":
        params["expires"] = str(expires + 86400)
    elif tamper == "signature":
        params["signature"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    elif tamper == "secret":
        params["signature"] = sign(KEY, expires, b"not the gateway's secret")
    else:
        del params["signature"]
    _problem(client.get(f"/v1/files/{key}", params=params), 403, "link-invalid")


@pytest.mark.parametrize("expires", ["soon", "-5", "1e9", "9" * 5000])
def test_an_expiry_that_is_no_unix_time_is_an_invalid_link(client: TestClient,
                                                           expires: str) -> None:
    response = client.get(f"/v1/files/{KEY}", params={"expires": expires, "signature": "00"})
    _problem(response, 403, "link-invalid")


def test_a_valid_link_to_a_missing_object_is_a_404_problem(
    store: LocalObjectStore, client: TestClient
) -> None:
    link = store.link("invoices/ten_1/never-stored.pdf", timedelta(minutes=5))
    _problem(client.get(_path(link)), 404, "file-not-found")


def test_a_link_signed_for_longer_than_any_link_is_refused(store: LocalObjectStore,
                                                            client: TestClient) -> None:
    store.put(KEY, PDF, "application/pdf")
    for days, status in ((6, 200), (8, 403), (3650, 403)):
        expires = int(time.time()) + days * 86400
        response = client.get(f"/v1/files/{KEY}", params={
            "expires": str(expires), "signature": sign(KEY, expires, SECRET)})
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            _problem(response, 403, "link-invalid")
            assert "7 days" in response.json()["detail"]


def test_links_to_a_voided_invoice_are_refused_and_its_void_copy_served(
        store: LocalObjectStore, client: TestClient) -> None:
    voided: set[tuple[str, str]] = set()
    asked: list[tuple[str, str]] = []

    def is_voided(tenant_id: str, invoice_id: str) -> bool:
        asked.append((tenant_id, invoice_id))
        return (tenant_id, invoice_id) in voided

    client.app.state.voided = is_voided  # type: ignore[attr-defined]
    key, void_key = "invoices/ten_1/inv_202612_ab12.pdf", "invoices/ten_1/inv_202612_ab12-void.pdf"
    store.put(key, PDF, "application/pdf")
    store.put(void_key, PDF + b"VOID", "application/pdf")
    link, void_link = (_path(store.link(k, timedelta(hours=1))) for k in (key, void_key))
    assert client.get(link).status_code == 200
    assert asked == [("ten_1", "inv_202612_ab12")]
    voided.add(("ten_1", "inv_202612_ab12"))
    refused = client.get(link)
    _problem(refused, 410, "invoice-voided")
    assert "inv_202612_ab12" in refused.json()["detail"]
    served = client.get(void_link)
    assert served.status_code == 200
    assert served.content == PDF + b"VOID"
    # Files that are no invoice PDF are not looked up.
    store.put("exports/usage.csv", b"a,b\n", "text/csv")
    asked.clear()
    assert client.get(_path(store.link("exports/usage.csv", timedelta(seconds=30)))).status_code \
        == 200
    assert asked == []

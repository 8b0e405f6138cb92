"""Invoice PDFs in the object store: S3 (a real S3Proxy unless configured) and the local directory.

Both stores get the same round trip; their download links are fetched the way a browser
would: S3 presigned URLs over HTTP from S3Proxy itself, local links through the gateway's
``/v1/files`` route.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.problems import install
from gateway.routes import files
from processors.runtime.settings import Settings
from storage.object_store import (
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    S3ObjectStore,
    open_object_store,
)
from tests.infra import S3Endpoint

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + secrets.token_bytes(64 * 1024) + b"\n%%EOF\n"
SECRET = secrets.token_bytes(32)


@dataclass
class Fetched:
    status: int
    body: bytes
    content_type: str


@dataclass
class Subject:
    store: ObjectStore
    #: GET a download link as a client without credentials would.
    fetch: Callable[[str], Fetched]


def _urlopen(url: str) -> Fetched:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return Fetched(response.status, response.read(), response.headers["Content-Type"])
    except urllib.error.HTTPError as exc:
        return Fetched(exc.code, exc.read(), exc.headers.get("Content-Type", ""))


def _s3(endpoint: S3Endpoint, bucket: str, prefix: str = "") -> S3ObjectStore:
    return S3ObjectStore(endpoint.url, bucket, endpoint.access_key, endpoint.secret_key,
                         endpoint.region, prefix=prefix)


@pytest.fixture(scope="module")
def bucket(s3_endpoint: S3Endpoint, run_id: str) -> Iterator[str]:
    """This run's bucket, emptied and removed afterwards (the S3 may be a shared one)."""
    import boto3
    from botocore.config import Config

    name = f"meterly-test-{run_id}"
    yield name
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint.url, region_name=s3_endpoint.region,
        aws_access_key_id=s3_endpoint.access_key, aws_secret_access_key=s3_endpoint.secret_key,
        config=Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}))
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(params=["s3", "local"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "s3":
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        bucket: str = request.getfixturevalue("bucket")
        yield Subject(_s3(endpoint, bucket, prefix=f"t{secrets.token_hex(3)}"), _urlopen)
        return
    store = LocalObjectStore(tmp_path / "objects", "http://testserver", SECRET)
    app = FastAPI()
    install(app)
    app.include_router(files.router)
    app.state.object_store = store
    app.state.link_secrets = (SECRET,)
    with TestClient(app) as client:

        def fetch(url: str) -> Fetched:
            parts = urlsplit(url)
            assert parts.netloc == "testserver", url
            response = client.get(f"{parts.path}?{parts.query}")
            return Fetched(response.status_code, response.content,
                           response.headers.get("content-type", ""))

        yield Subject(store, fetch)


def test_put_get_exists_round_trip(subject: Subject) -> None:
    key = "invoices/ten_1/MTR-2026-000042.pdf"
    assert not subject.store.exists(key)
    subject.store.put(key, PDF, "application/pdf")
    assert subject.store.exists(key)
    assert subject.store.get(key) == PDF
    # A second put replaces the object whole.
    subject.store.put(key, PDF[:100], "application/pdf")
    assert subject.store.get(key) == PDF[:100]


def test_a_missing_key_is_object_not_found(subject: Subject) -> None:
    with pytest.raises(ObjectNotFoundError) as caught:
        subject.store.get("invoices/ten_1/never-stored.pdf")
    assert caught.value.key == "invoices/ten_1/never-stored.pdf"
    assert not subject.store.exists("invoices/ten_1/never-stored.pdf")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.pdf", "a//b.pdf", "a/./b.pdf",
                                 "sp ace.pdf", "ünï.pdf", ""])
def test_illegal_keys_are_refused(subject: Subject, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        subject.store.put(key, b"x", "application/octet-stream")
    with pytest.raises(ValueError, match="invalid object key"):
        subject.store.link(key, timedelta(minutes=1))


def test_a_download_link_serves_the_bytes(subject: Subject) -> None:
    key = "invoices/ten_2/MTR-2026-000043.pdf"
    subject.store.put(key, PDF, "application/pdf")
    fetched = subject.fetch(subject.store.link(key, timedelta(minutes=5)))
    assert fetched.status == 200
    assert fetched.body == PDF
    assert fetched.content_type == "application/pdf"


def test_an_expired_link_is_refused(subject: Subject) -> None:
    key = "invoices/ten_3/MTR-2026-000044.pdf"
    subject.store.put(key, PDF, "application/pdf")
    link = subject.store.link(key, timedelta(seconds=3))
    # Served while it is valid (at least 2 s left: both stores count whole seconds)...
    assert subject.fetch(link).status == 200
    # ...and refused once it has expired. Polled rather than slept: the fetch that follows
    # the expiry is the one checked, however slow the machine.
    deadline = time.monotonic() + 30
    while (fetched := subject.fetch(link)).status == 200:
        assert time.monotonic() < deadline, "the 3 s link was still served after 30 s"
        time.sleep(0.25)
    # S3Proxy enforces X-Amz-Date + X-Amz-Expires (403 AccessDenied, "Request has expired");
    # the gateway answers 403 with a link-expired problem.
    assert fetched.status == 403
    assert PDF[:20] not in fetched.body
    assert b"expired" in fetched.body, fetched.body


def test_a_tampered_link_is_refused(subject: Subject) -> None:
    key = "invoices/ten_4/MTR-2026-000045.pdf"
    other = "invoices/ten_5/MTR-2026-000046.pdf"
    subject.store.put(key, PDF, "application/pdf")
    subject.store.put(other, b"%PDF- another tenant's invoice", "application/pdf")
    link = subject.store.link(key, timedelta(minutes=5))
    fetched = subject.fetch(link.replace("ten_4/MTR-2026-000045", "ten_5/MTR-2026-000046"))
    assert fetched.status == 403
    assert b"another tenant" not in fetched.body


def test_an_existing_bucket_is_reused(s3_endpoint: S3Endpoint, bucket: str) -> None:
    first = _s3(s3_endpoint, bucket)
    first.put("reuse/a.pdf", PDF, "application/pdf")
    second = _s3(s3_endpoint, bucket)  # the bucket exists now: no error, same objects
    assert second.get("reuse/a.pdf") == PDF
    assert bucket in second.describe()


def test_prefixes_keep_stores_apart(s3_endpoint: S3Endpoint, bucket: str) -> None:
    one, two = _s3(s3_endpoint, bucket, "one/"), _s3(s3_endpoint, bucket, "two")
    one.put("same.pdf", b"%PDF-one", "application/pdf")
    assert not two.exists("same.pdf")
    assert one.get("same.pdf") == b"%PDF-one"


def test_settings_choose_the_store(s3_endpoint: S3Endpoint, bucket: str,
                                   tmp_path: Path) -> None:
    local = open_object_store(Settings(home=tmp_path), "http://gw", SECRET)
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path / "objects"
    s3 = open_object_store(
        Settings(home=tmp_path, object_store_url=f"s3://{bucket}/from-settings",
                 s3_endpoint_url=s3_endpoint.url, s3_access_key=s3_endpoint.access_key,
                 s3_secret_key=s3_endpoint.secret_key),
        "http://gw", SECRET)
    assert isinstance(s3, S3ObjectStore)
    s3.put("x.pdf", b"%PDF-x", "application/pdf")
    assert _s3(s3_endpoint, bucket).get("from-settings/x.pdf") == b"%PDF-x"

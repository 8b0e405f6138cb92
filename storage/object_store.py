"""Where invoice PDFs are kept: a local directory by default, S3 (or S3-compatible) storage
when ``METERLY_OBJECT_STORE_URL=s3://bucket[/prefix]``.

Both stores take the same keys: relative paths of letters, digits, ``.``, ``_``, ``-`` and
``/`` (``invoices/ten_1/MTR-2026-000042.pdf``), never absolute and never holding ``..``.
Both hand out expiring download links: S3 presigns them itself; the local store signs
``<base_url>/v1/files/<key>?expires=...&signature=...`` with HMAC-SHA256
(``storage.signed_links``), which the gateway's ``/v1/files`` route checks.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from storage import signed_links

_KEY = re.compile(r"[A-Za-z0-9._/-]{1,1024}")
#: The longest lifetime of a download link (S3 refuses presigned URLs past seven days).
MAX_LINK_LIFETIME = timedelta(days=7)


class ObjectNotFoundError(LookupError):
    """No object is stored under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored under {key!r}")
        self.key = key


def validate_key(key: str) -> str:
    """Return ``key`` if it is a legal object key, else raise ValueError saying why."""
    if not _KEY.fullmatch(key):
        raise ValueError(
            f"invalid object key {key!r}: use 1 to 1024 of A-Z a-z 0-9 . _ - /"
        )
    if key.startswith("/"):
        raise ValueError(f"invalid object key {key!r}: it must be relative, not absolute")
    if ".." in key:
        raise ValueError(f"invalid object key {key!r}: it must not contain '..'")
    if any(part in ("", ".") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}: empty or '.' path segment")
    return key


def _lifetime(expires_in: timedelta) -> int:
    seconds = int(expires_in.total_seconds())
    if seconds < 1 or expires_in > MAX_LINK_LIFETIME:
        raise ValueError(f"a link must live between 1 second and 7 days, not {expires_in}")
    return seconds


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object there, all or nothing."""

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFoundError when there is none."""

    def exists(self, key: str) -> bool: ...

    def link(self, key: str, expires_in: timedelta) -> str:
        """A URL that downloads the object without credentials until ``expires_in`` passes."""

    def describe(self) -> str:
        """Where objects go, for logs (never a secret)."""


class LocalObjectStore:
    """Objects as files under ``root``; links served by the gateway at ``base_url``.

    The content type is not stored: the gateway derives it from the key's extension.
    """

    def __init__(self, root: Path, base_url: str, secret: bytes) -> None:
        if not secret:
            raise ValueError("the local object store needs a non-empty link secret")
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        # Directories this process made or found: one mkdir per tenant, not per object.
        self._dirs: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        # Written beside the target and renamed over it: a reader sees the old file or the
        # new one, never a part, and a crash leaves at most a stray temporary file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def link(self, key: str, expires_in: timedelta) -> str:
        validate_key(key)
        expires = int(time.time()) + _lifetime(expires_in)
        signature = signed_links.sign(key, expires, self._secret)
        return f"{self.base_url}/v1/files/{quote(key)}?expires={expires}&signature={signature}"

    def describe(self) -> str:
        return f"local directory {self.root}"


def _error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3ObjectStore:
    """Objects in an S3 bucket, on AWS or an S3-compatible server (S3Proxy, MinIO, ...).

    ``endpoint_url`` None means AWS; keys None mean boto3's own credential chain
    (environment, profile, instance role). The bucket is created when it does not exist.
    """

    def __init__(self, endpoint_url: str | None, bucket: str, access_key: str | None,
                 secret_key: str | None, region: str, prefix: str = "") -> None:
        import boto3
        from botocore.config import Config

        if (access_key is None) != (secret_key is None):
            raise ValueError("set both the S3 access key and the S3 secret key, or neither")
        self.endpoint_url, self.bucket = endpoint_url, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        config = Config(
            signature_version="s3v4",
            # S3-compatible servers (S3Proxy among them) refuse the checksum headers that
            # botocore sends by default ("NotImplemented: A header you provided implies
            # functionality that is not implemented").
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
            # http://host/bucket/key: no DNS name per bucket, which local servers lack.
            s3={"addressing_style": "path"},
        )
        self._client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        )
        self._region = region
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        extra: dict[str, Any] = {}
        if self._region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            # Another process created it in between.
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                ContentType=content_type)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFoundError(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def link(self, key: str, expires_in: timedelta) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=_lifetime(expires_in),
        )
        return url

    def describe(self) -> str:
        where = self.endpoint_url or f"AWS ({self._region})"
        return f"s3://{self.bucket}/{self.prefix} at {where}"


def put_all(store: ObjectStore, items: Sequence[tuple[str, bytes, str]],
            workers: int = 8) -> None:
    """``store.put`` for every ``(key, data, content_type)``, several at a time.

    Each put is durable on its own (fsync locally, an acknowledged PUT on S3), and both wait
    on a device or the network rather than the CPU: overlapping them is what keeps a batch
    of a few hundred invoice PDFs from queueing behind one disk flush after another.
    """
    if len(items) <= 1:
        for key, data, content_type in items:
            store.put(key, data, content_type)
        return
    with ThreadPoolExecutor(min(workers, len(items))) as pool:
        for future in [pool.submit(store.put, *item) for item in items]:
            future.result()


class StoreSettings(Protocol):
    """The settings the store is chosen by (``Settings`` has them; storage imports no
    settings module)."""

    @property
    def home(self) -> Path: ...
    @property
    def object_store_url(self) -> str | None: ...
    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def s3_access_key(self) -> str | None: ...
    @property
    def s3_secret_key(self) -> str | None: ...
    @property
    def s3_region(self) -> str: ...


def open_object_store(settings: StoreSettings, base_url: str, secret: bytes) -> ObjectStore:
    """The store ``settings`` name: ``<home>/objects`` unless ``object_store_url`` is set.

    ``base_url`` is where the gateway serves ``/v1/files`` (local links); ``secret`` signs
    those links. Both are unused by S3, which presigns its own links.
    """
    url = settings.object_store_url
    if not url:
        return LocalObjectStore(settings.home / "objects", base_url, secret)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"object store URL {url!r} is not s3://bucket[/prefix]")
    return S3ObjectStore(settings.s3_endpoint_url, parts.netloc, settings.s3_access_key,
                         settings.s3_secret_key, settings.s3_region, prefix=parts.path)

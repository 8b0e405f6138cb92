"""Meterly's own keys, one set per purpose, each set newest first.

| purpose    | setting                | what the keys do                                         |
|------------|------------------------|----------------------------------------------------------|
| `links`    | `METERLY_LINK_KEYS`    | HMAC-sign PDF download links (``storage.signed_links``)  |
| `sessions` | `METERLY_SESSION_KEYS` | HMAC-sign console session cookies (``gateway.console``)  |
| `secrets`  | `METERLY_SECRET_KEYS`  | wrap the data keys sealing webhook signing secrets       |
|            |                        | (``processors.webhooks.core.sealing``)                   |
| `records`  | `METERLY_RECORD_KEYS`  | HMAC-attest ingest records the validator verified        |
|            |                        | (``processors.usage.core.ingest_credentials``)           |

The newest key of a set signs or seals; every key of it verifies or opens, so a rotation
never breaks what the previous key made. Each key is 32 random bytes, independent of the
operator token and of each other: a download link is no oracle for anything else.

A setting, when set, is the whole set: ``id:base64url,id:base64url`` (``meterly keys show``
prints them in that form). Otherwise the sets live in ``<home>/keys.json`` (mode 0600),
generated on first use by whichever process comes first; ``meterly keys rotate PURPOSE``
puts a new key in front and ``meterly keys retire PURPOSE ID`` drops an old one. Processes
read their keys when they start, so restart them after a change.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from processors.runtime.settings import Settings

PURPOSES = ("links", "sessions", "secrets", "records")
SETTINGS = {"links": "METERLY_LINK_KEYS", "sessions": "METERLY_SESSION_KEYS",
            "secrets": "METERLY_SECRET_KEYS", "records": "METERLY_RECORD_KEYS"}
KEY_BYTES = 32


@dataclass(frozen=True)
class Keys:
    purpose: str
    #: (id, key), newest first; never empty.
    keys: tuple[tuple[str, bytes], ...]

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    @property
    def secrets(self) -> tuple[bytes, ...]:
        return tuple(k for _, k in self.keys)

    def by_id(self) -> dict[str, bytes]:
        return dict(self.keys)

    def text(self) -> str:
        return ",".join(f"{i}:{_b64(k)}" for i, k in self.keys)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_keys(purpose: str, text: str, source: str) -> Keys:
    """The set in ``text`` (``id:base64url,...``); ``source`` names it in errors."""
    keys: list[tuple[str, bytes]] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        key_id, _, encoded = entry.partition(":")
        if not key_id or not key_id.replace("-", "").replace("_", "").isalnum() or \
                not key_id.isascii():
            raise ValueError(f"{source}: key id {key_id!r} must be letters, digits, - and _")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ValueError(f"{source}: key {key_id!r} is not base64url: {exc}") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{source}: key {key_id!r} must be {KEY_BYTES} bytes, not "
                             f"{len(key)}")
        if any(key_id == seen for seen, _ in keys):
            raise ValueError(f"{source}: key id {key_id!r} appears twice")
        keys.append((key_id, key))
    if not keys:
        raise ValueError(f"{source}: no key")
    return Keys(purpose, tuple(keys))


def new_key(purpose: str) -> tuple[str, bytes]:
    """A fresh key with an id that sorts by creation time (``links-20261207-ab12``)."""
    return (f"{purpose}-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(2)}",
            secrets.token_bytes(KEY_BYTES))


def keyring_file(settings: Settings) -> Path:
    return settings.home / "keys.json"


def _from_setting(settings: Settings, purpose: str) -> Keys | None:
    text = {"links": settings.link_keys, "sessions": settings.session_keys,
            "secrets": settings.secret_keys, "records": settings.record_keys}[purpose]
    # Empty counts as unset (docker-compose passes ``${METERLY_LINK_KEYS:-}`` through).
    return parse_keys(purpose, text, SETTINGS[purpose]) if text and text.strip() else None


def _write(path: Path, sets: dict[str, str], replace: bool) -> bool:
    """Write ``sets`` to ``path`` (0600) whole or not at all; with ``replace`` False, only
    if no file is there yet (then False when another process was first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(sets, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # fails if the file exists: the first writer wins
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _read_file(settings: Settings) -> dict[str, str]:
    """The sets in ``<home>/keys.json``, with any missing purpose generated and written."""
    path = keyring_file(settings)
    while True:
        try:
            sets = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            sets = {}
        missing = [p for p in PURPOSES if p not in sets]
        if not missing:
            return sets
        grown = {**sets, **{p: Keys(p, (new_key(p),)).text() for p in missing}}
        # A first file only if none is there yet: the first process wins, the others read it.
        if _write(path, grown, replace=bool(sets)):
            return grown


def load(settings: Settings, purpose: str) -> Keys:
    """The keys for ``purpose``: from its setting, else from ``<home>/keys.json``."""
    if purpose not in PURPOSES:
        raise ValueError(f"no such key purpose {purpose!r}: use one of {', '.join(PURPOSES)}")
    keys = _from_setting(settings, purpose)
    if keys is not None:
        return keys
    return parse_keys(purpose, _read_file(settings)[purpose], str(keyring_file(settings)))


def _change(settings: Settings, purpose: str) -> dict[str, str]:
    if _from_setting(settings, purpose) is not None:
        raise ValueError(f"{SETTINGS[purpose]} is set, so the {purpose} keys are whatever it "
                         "says: change the setting instead")
    return _read_file(settings)


def rotate(settings: Settings, purpose: str) -> Keys:
    """Put a new key in front of ``purpose``'s keys in ``<home>/keys.json``."""
    sets = _change(settings, purpose)
    keys = load(settings, purpose)
    rotated = Keys(purpose, (new_key(purpose), *keys.keys))
    _write(keyring_file(settings), {**sets, purpose: rotated.text()}, replace=True)
    return rotated


def retire(settings: Settings, purpose: str, key_id: str) -> Keys:
    """Drop key ``key_id`` (never the newest) from ``purpose``'s keys."""
    sets = _change(settings, purpose)
    keys = load(settings, purpose)
    if key_id == keys.current[0]:
        raise ValueError(f"{key_id} is the newest {purpose} key: rotate first")
    kept = tuple(k for k in keys.keys if k[0] != key_id)
    if len(kept) == len(keys.keys):
        raise ValueError(f"no {purpose} key {key_id}")
    retired = Keys(purpose, kept)
    _write(keyring_file(settings), {**sets, purpose: retired.text()}, replace=True)
    return retired

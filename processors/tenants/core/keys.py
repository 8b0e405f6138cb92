"""API keys: generation, hashing, and whether a key may be used now (pure).

Keys are ``mtr_`` plus 32 random bytes (256 bits, URL-safe base64). Only the SHA-256 of a key
is stored. A fast, unsalted hash is right here, unlike for passwords: a salt and a slow hash
defend low-entropy secrets against guessing, and 256 random bits cannot be guessed, so a
leaked hash table gives nothing away; a plain hash also lets every gateway look a key up in
one dictionary probe without sharing a secret pepper.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.admin_v1 import ApiKey
from schemas.rfc3339 import parse_time

PREFIX = "mtr_"
DISPLAY_PREFIX_LENGTH = 12


@dataclass(frozen=True)
class NewKey:
    raw: str
    display_prefix: str
    hash: str


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate() -> NewKey:
    raw = PREFIX + secrets.token_urlsafe(32)
    return NewKey(raw, raw[:DISPLAY_PREFIX_LENGTH], key_hash(raw))


def looks_like_key(raw: str) -> bool:
    return raw.startswith(PREFIX) and 40 <= len(raw) <= 64


def same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


#: A key that may only send usage: ``POST /v1/events`` over HTTP, and the credential of
#: records on the Kafka ingest topic (``processors.usage.core.ingest_credentials``).
INGEST_SCOPE = "ingest"
SCOPES = (INGEST_SCOPE,)
#: The one route an ingest key may call.
INGEST_ROUTE = ("POST", "/v1/events")


def scope_refusal(key: ApiKey, method: str, route: str) -> str | None:
    """Why ``key`` may not call ``method route`` (None when it may)."""
    if key.scope == INGEST_SCOPE and (method, route) != INGEST_ROUTE:
        return (f"key {key.prefix}... is an ingest key: it may only send usage "
                "(POST /v1/events, or records on the Kafka ingest topic)")
    return None


KeyState = Literal["usable", "revoked", "expired"]
#: Why a key in each state is refused, as the API says it.
REFUSALS: dict[KeyState, str] = {
    "revoked": "the API key was revoked",
    "expired": "the API key was rotated and its overlap period has ended",
}


def key_state(key: ApiKey, at: datetime) -> KeyState:
    """Whether ``key`` may be used at ``at``: revoked, past its rotation overlap, or usable."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and parse_time(key.expires_at) <= at:
        return "expired"
    return "usable"

"""API keys: generation and hashing (pure).

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

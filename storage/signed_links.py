"""Expiring download links: an HMAC-SHA256 signature over an object key and an expiry time.

A link carries ``expires`` (Unix seconds) and ``signature`` (lower-case hex); whoever holds
the secret can check that neither the key nor the expiry was changed, and that the link has
not expired yet. Pure functions: the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

# Versioned and purpose-bound, so a signature made for something else never verifies here.
_CONTEXT = b"meterly-file-link-v1\n"


def _message(key: str, expires_at: int) -> bytes:
    # The integer goes first: it holds no newline, so the split between the two is unambiguous.
    return _CONTEXT + f"{expires_at}\n{key}".encode()


def sign(key: str, expires_at: int, secret: bytes) -> str:
    """The hex signature of a link to ``key`` valid until ``expires_at`` (Unix seconds)."""
    if not secret:
        raise ValueError("the link secret must not be empty")
    return hmac.new(secret, _message(key, expires_at), hashlib.sha256).hexdigest()


def verify(key: str, expires_at: int, signature: str, secret: bytes, now: float,
           max_lifetime: float | None = None) -> str | None:
    """None when the link is valid at ``now``; otherwise why not: "bad signature", "expired",
    or "too long" (it expires more than ``max_lifetime`` seconds after ``now``, which no link
    signed with that limit can).

    The signature is checked first, so a link whose expiry was pushed back reads as forged,
    not as expired. The comparison takes the same time wherever the first difference is.
    """
    expected = sign(key, expires_at, secret)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "bad signature"
    if now >= expires_at:
        return "expired"
    if max_lifetime is not None and expires_at - now > max_lifetime:
        return "too long"
    return None


def verify_any(key: str, expires_at: int, signature: str, secrets: Sequence[bytes],
               now: float, max_lifetime: float | None = None) -> str | None:
    """``verify`` against each of ``secrets`` (the link keys, newest first, so links signed
    before a rotation keep working): the verdict of the key that signed it, if any did."""
    for secret in secrets:
        why = verify(key, expires_at, signature, secret, now, max_lifetime)
        if why != "bad signature":
            return why
    return "bad signature"

"""Webhook signatures in the Standard Webhooks scheme (https://www.standardwebhooks.com).

A receiver checks ``webhook-signature`` with any Standard Webhooks library, so the signed
content and the header formats below follow the spec exactly: the HMAC-SHA256 of
``{webhook-id}.{webhook-timestamp}.{body}`` keyed by the base64-decoded part of a
``whsec_`` secret, sent as ``v1,<base64>``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from functools import lru_cache
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
#: The spec asks for 24 to 64 random bytes; 32 matches SHA-256's output size.
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


# Decoding is cheap but not free, and every delivery signs with the same few secrets; the
# bound keeps memory flat however many endpoints a long-running dispatcher has seen.
@lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX):]
    # Secrets made elsewhere (e.g. imported from another provider) often drop the padding.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature; ``body`` must be the exact bytes sent."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    digest = hmac.digest(_key(secret), signed, "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt.

    While a secret is being rotated both the old and the new one are valid, and the header
    carries a signature for each, so receivers verifying with either keep accepting.
    """
    if not secrets:
        raise ValueError("signing needs at least one secret")
    if not msg_id:
        raise ValueError("a webhook message needs an id")
    # A secret listed twice would only lengthen the header.
    unique = dict.fromkeys(secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in unique),
        "content-type": "application/json",
    }

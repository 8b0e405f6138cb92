"""Which tenant a record on the Kafka ingest topic may count for: the credential it carries,
never its record key alone. Pure.

A producer that may write the ingest topic is trusted to write, not to say whose usage it
writes: every record carries, in the ``meterly-key`` header, an API key of the tenant its
record key names (an ingest key from ``meterly ingest credentials`` or any usable key of the
tenant). The validator refuses a record without one, with an unknown, revoked or expired
key, or with another tenant's key.

A refused record is dead-lettered without its key (a secret does not belong in a topic
kept for 30 days): a key the validator verified is replaced by an attestation,
``meterly-attested-key: <record key id>.<api key id>.<HMAC-SHA256>``, under Meterly's own
``records`` key (``processors.runtime.keyring``), over the tenant, the API key's id, the
value and the record's other headers; any other key is replaced by its display prefix
(``meterly-key-prefix``), for the operator to see which key was wrong. A replayed dead
letter (``meterly ingest dead-letter --replay``) carries the attestation back, and the
validator accepts it as that API key, still checking that the key is usable then: so a
record refused for a reason since fixed counts on replay, and nothing a producer can
write attributes usage to a tenant whose key it does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from processors.tenants.core import keys
from schemas.admin_v1 import ApiKey

KEY_HEADER = "meterly-key"
ATTESTED_HEADER = "meterly-attested-key"
PREFIX_HEADER = "meterly-key-prefix"
_CONTEXT = b"meterly-ingest-attestation-v1\n"

Headers = Sequence[tuple[str, str | bytes | None]]

MISSING = (f"no ingest credential: the record needs a {KEY_HEADER} header holding an API "
           "key of its tenant (meterly ingest credentials)")


@dataclass(frozen=True)
class Presented:
    """What a record presents: a raw key, or the id of a key an attestation vouches for."""

    raw_key: str | None = None
    attested_key_id: str | None = None


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def _covered(headers: Headers) -> bytes:
    """The headers an attestation covers: all but Meterly's own, sorted."""
    kept = sorted((k, _text(v)) for k, v in headers if not k.startswith("meterly-"))
    return b"".join(f"{k}\0{v}\0".encode() for k, v in kept)


def _mac(secret: bytes, record_key_id: str, key_id: str, tenant_id: str,
         value: bytes | None, headers: Headers) -> str:
    message = b"\n".join((_CONTEXT, record_key_id.encode(), key_id.encode(),
                          tenant_id.encode(), hashlib.sha256(value or b"").digest(),
                          hashlib.sha256(_covered(headers)).digest()))
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def attest(record_key: tuple[str, bytes], key_id: str, tenant_id: str,
           value: bytes | None, headers: Headers) -> str:
    """The ``meterly-attested-key`` value for a record the validator verified."""
    secret_id, secret = record_key
    return f"{secret_id}.{key_id}.{_mac(secret, secret_id, key_id, tenant_id, value, headers)}"


def presented(headers: Headers, tenant_id: str, value: bytes | None,
              record_keys: Mapping[str, bytes]) -> Presented | str:
    """The credential a record carries, or why it carries none that can be trusted."""
    raw = next((_text(v) for k, v in headers if k == KEY_HEADER and v), None)
    if raw is not None:
        return Presented(raw_key=raw.strip())
    attested = next((_text(v) for k, v in headers if k == ATTESTED_HEADER and v), None)
    if attested is None:
        return MISSING
    parts = attested.split(".")
    if len(parts) != 3:
        return f"the {ATTESTED_HEADER} header is malformed"
    secret_id, key_id, mac = parts
    secret = record_keys.get(secret_id)
    if secret is None:
        return (f"the {ATTESTED_HEADER} header names records key {secret_id!r}, which this "
                "deployment does not hold")
    expected = _mac(secret, secret_id, key_id, tenant_id, value, headers)
    if not hmac.compare_digest(expected, mac):
        return (f"the {ATTESTED_HEADER} header does not match the record (altered, or "
                "made for another tenant)")
    return Presented(attested_key_id=key_id)


def refusal(key: ApiKey | None, tenant_id: str, at: datetime) -> str | None:
    """Why the key a record presents does not let it count for ``tenant_id`` (None: it
    does). ``key`` is None when no key of Meterly's matches what was presented."""
    if key is None:
        return f"the {KEY_HEADER} header holds no API key Meterly knows"
    if key.tenant_id != tenant_id:
        return (f"the API key {key.prefix}... belongs to another tenant than the record "
                f"key {tenant_id!r}")
    state = keys.key_state(key, at)
    if state != "usable":
        return keys.REFUSALS[state]
    return None


def dead_letter_headers(headers: Headers, verified: ApiKey | None, tenant_id: str,
                        value: bytes | None, record_key: tuple[str, bytes]) -> list[
                            tuple[str, str | bytes | None]]:
    """The record's headers as the dead-letter topic keeps them: the raw key never; an
    attestation when the key was verified as the tenant's, else the key's display prefix."""
    raw = next((_text(v) for k, v in headers if k == KEY_HEADER and v), None)
    kept: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in headers if k not in (KEY_HEADER, PREFIX_HEADER)]
    if raw is None:
        return kept
    if verified is not None:
        if not any(k == ATTESTED_HEADER for k, _ in kept):
            kept.append((ATTESTED_HEADER, attest(
                record_key, verified.id, tenant_id, value, kept).encode()))
        return kept
    kept.append((PREFIX_HEADER, raw[:keys.DISPLAY_PREFIX_LENGTH].encode()))
    return kept

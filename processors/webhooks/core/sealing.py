"""Webhook signing secrets sealed at rest: envelope encryption with AES-256-GCM. Pure.

An endpoint's ``whsec_`` secret must be kept in a form Meterly can read back (signing needs
it, unlike an API key, which is only ever compared by hash), and it travels on the admin
topic, which every Meterly process reads. So it is sealed:

1. a fresh 256-bit data key encrypts the secret (AES-GCM, 96-bit random nonce), bound to the
   endpoint's id as associated data, so a sealed secret copied into another endpoint's record
   does not open;
2. the data key is wrapped by the current key-encryption key from settings
   (``METERLY_SECRET_KEYS``, see ``processors.runtime.keyring``), bound to that key's id;
3. the record keeps ``mse1.<key id>.<wrapped data key>.<sealed secret>`` (base64url).

Opening needs the key named in the record, so an old key-encryption key stays in the keyring
(behind the new one) while records sealed with it exist. Records written before sealing hold
the secret itself (``whsec_...``); ``open_secret`` hands those back as they are.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "mse1"
PLAIN = "whsec_"
_NONCE = 12
_WRAP_CONTEXT = b"meterly-webhook-data-key-v1\n"
_SEAL_CONTEXT = b"meterly-webhook-secret-v1\n"


class SealError(ValueError):
    """A sealed secret that cannot be opened: unknown key, damaged or moved."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(secret: str, endpoint_id: str, key_id: str, key: bytes) -> str:
    """``secret`` sealed for ``endpoint_id`` under the key-encryption key ``key``."""
    if "." in key_id or not key_id:
        raise ValueError(f"key id {key_id!r} must be non-empty and hold no '.'")
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, seal_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = AESGCM(key).encrypt(wrap_nonce, data_key, _WRAP_CONTEXT + key_id.encode())
    sealed = AESGCM(data_key).encrypt(seal_nonce, secret.encode(),
                                      _SEAL_CONTEXT + endpoint_id.encode())
    return ".".join((PREFIX, key_id, _b64(wrap_nonce + wrapped), _b64(seal_nonce + sealed)))


def key_of(stored: str) -> str | None:
    """The id of the key that sealed ``stored``; None for a secret kept in clear."""
    if stored.startswith(PLAIN):
        return None
    parts = stored.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise SealError("not a sealed webhook secret")
    return parts[1]


def open_secret(stored: str, endpoint_id: str, keys: Mapping[str, bytes]) -> str:
    """The ``whsec_`` secret in ``stored``; ``keys`` maps key ids to key-encryption keys."""
    key_id = key_of(stored)
    if key_id is None:
        return stored
    _, _, wrapped_text, sealed_text = stored.split(".")
    key = keys.get(key_id)
    if key is None:
        raise SealError(f"the webhook secret was sealed with key {key_id!r}, which is not "
                        "in METERLY_SECRET_KEYS")
    try:
        wrapped, sealed = _unb64(wrapped_text), _unb64(sealed_text)
        data_key = AESGCM(key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:],
                                       _WRAP_CONTEXT + key_id.encode())
        plain = AESGCM(data_key).decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                         _SEAL_CONTEXT + endpoint_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError(f"the webhook secret sealed with key {key_id!r} does not open "
                        "(damaged, or sealed for another endpoint)") from exc
    return plain.decode()

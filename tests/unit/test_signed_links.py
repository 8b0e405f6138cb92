"""Download-link signatures: valid until expiry, and any change to key, expiry or secret fails."""

from __future__ import annotations

import pytest

from storage.signed_links import sign, verify

SECRET = b"s" * 32
KEY = "invoices/ten_1/MTR-2026-000042.pdf"
EXPIRES = 1_800_000_000


def test_a_fresh_link_is_valid() -> None:
    signature = sign(KEY, EXPIRES, SECRET)
    assert len(signature) == 64
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES - 1) is None


def test_a_link_is_expired_from_its_expiry_second_on() -> None:
    signature = sign(KEY, EXPIRES, SECRET)
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES - 0.001) is None
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES) == "expired"
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES + 3600) == "expired"


def test_a_tampered_key_is_refused() -> None:
    signature = sign(KEY, EXPIRES, SECRET)
    other = "invoices/ten_2/MTR-2026-000042.pdf"
    assert verify(other, EXPIRES, signature, SECRET, now=EXPIRES - 60) == "bad signature"


def test_a_pushed_back_expiry_is_a_bad_signature_not_a_valid_link() -> None:
    signature = sign(KEY, EXPIRES, SECRET)
    assert verify(KEY, EXPIRES + 86400, signature, SECRET, now=EXPIRES + 60) == "bad signature"
    # Even an expired link with a changed expiry reads as forged.
    assert verify(KEY, EXPIRES - 1, signature, SECRET, now=EXPIRES + 60) == "bad signature"


def test_a_link_signed_with_another_secret_is_refused() -> None:
    signature = sign(KEY, EXPIRES, b"another secret, not ours")
    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES - 60) == "bad signature"


@pytest.mark.parametrize("garbage", ["", "zz", "é" * 64, sign(KEY, EXPIRES, SECRET).upper()])
def test_malformed_signatures_are_refused_without_raising(garbage: str) -> None:
    assert verify(KEY, EXPIRES, garbage, SECRET, now=EXPIRES - 60) == "bad signature"


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign(KEY, EXPIRES, b"")

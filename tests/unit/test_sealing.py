"""Webhook signing secrets sealed at rest (envelope encryption, AES-256-GCM)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.webhooks.core.sealing import SealError, key_of, open_secret, seal

OLD, NEW = b"o" * 32, b"n" * 32
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3OA=="


def test_a_sealed_secret_opens_with_its_key_and_endpoint_only() -> None:
    sealed = seal(SECRET, "we_1", "k1", OLD)
    assert sealed.startswith("mse1.k1.")
    assert SECRET not in sealed
    assert SECRET.removeprefix("whsec_") not in sealed
    assert key_of(sealed) == "k1"
    assert open_secret(sealed, "we_1", {"k1": OLD, "k2": NEW}) == SECRET
    with pytest.raises(SealError, match="sealed for another endpoint"):
        open_secret(sealed, "we_2", {"k1": OLD})
    with pytest.raises(SealError, match="not in METERLY_SECRET_KEYS"):
        open_secret(sealed, "we_1", {"k2": NEW})
    with pytest.raises(SealError, match="does not open"):
        open_secret(sealed, "we_1", {"k1": NEW})  # the id names a key that is not this one


def test_every_seal_is_fresh() -> None:
    assert seal(SECRET, "we_1", "k1", OLD) != seal(SECRET, "we_1", "k1", OLD)


def test_a_secret_kept_in_clear_by_an_older_writer_is_handed_back() -> None:
    assert key_of(SECRET) is None
    assert open_secret(SECRET, "we_1", {}) == SECRET


@pytest.mark.parametrize("stored", ["mse1.k1.abc", "mse2.k1.a.b", "plain", "mse1.k1.!!.??"])
def test_damaged_records_are_refused(stored: str) -> None:
    with pytest.raises(SealError):
        open_secret(stored, "we_1", {"k1": OLD})


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=10))
def test_flipping_any_character_is_detected(position: int, delta: int) -> None:
    sealed = seal(SECRET, "we_1", "k1", OLD)
    position %= len(sealed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if sealed[position] == "." or position < len("mse1.k1."):
        return
    replaced = alphabet[(alphabet.index(sealed[position]) + 1 + delta) % len(alphabet)]
    tampered = sealed[:position] + replaced + sealed[position + 1:]
    try:
        opened = open_secret(tampered, "we_1", {"k1": OLD})
    except SealError:
        return
    # base64 may decode two texts to the same bytes (the last character's unused bits).
    assert opened == SECRET


def test_key_ids_may_not_hold_the_separator() -> None:
    with pytest.raises(ValueError, match=r"no '\.'"):
        seal(SECRET, "we_1", "k.1", OLD)

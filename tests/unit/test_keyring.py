"""Meterly's own keys: from settings, or generated once in <home>/keys.json (0600)."""

from __future__ import annotations

import base64
import multiprocessing
import stat
from pathlib import Path

import pytest

from processors.runtime import keyring
from processors.runtime.settings import Settings

K1 = base64.urlsafe_b64encode(b"1" * 32).decode().rstrip("=")
K2 = base64.urlsafe_b64encode(b"2" * 32).decode().rstrip("=")


def test_generated_once_owner_only_and_independent(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    sets = {p: keyring.load(settings, p) for p in keyring.PURPOSES}
    path = keyring.keyring_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {p: keyring.load(settings, p) for p in keyring.PURPOSES} == sets
    secrets = [k.current[1] for k in sets.values()]
    assert len(set(secrets)) == len(keyring.PURPOSES)
    assert all(len(s) == 32 for s in secrets)
    assert [k.current[0].split("-")[0] for k in sets.values()] == list(keyring.PURPOSES)


def _load(home: str) -> bytes:
    return keyring.load(Settings(home=Path(home)), "links").current[1]


def test_processes_starting_together_agree_on_one_set(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        found = pool.map(_load, [str(tmp_path)] * 8)
    assert len(set(found)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left


def test_a_setting_is_the_whole_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, link_keys=f"new:{K2}, old:{K1}")
    keys = keyring.load(settings, "links")
    assert keys.current == ("new", b"2" * 32)
    assert keys.secrets == (b"2" * 32, b"1" * 32)
    assert keys.by_id() == {"new": b"2" * 32, "old": b"1" * 32}
    assert keyring.parse_keys("links", keys.text(), "x") == keys
    with pytest.raises(ValueError, match="METERLY_LINK_KEYS is set"):
        keyring.rotate(settings, "links")


@pytest.mark.parametrize(
    ("text", "message"),
    [(" ,", "no key"), ("a:" + K1[:-3], "32 bytes"), (f"a b:{K1}", "key id"),
     (f"a:{K1},a:{K2}", "twice"), ("a:@@@@", "base64url|32 bytes")],
)
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"METERLY_SESSION_KEYS.*({message})"):
        keyring.load(Settings(home=tmp_path, session_keys=text), "sessions")


def test_rotate_puts_a_new_key_in_front_and_retire_drops_an_old_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = keyring.load(settings, "secrets")
    links = keyring.load(settings, "links")
    rotated = keyring.rotate(settings, "secrets")
    assert rotated.keys[1:] == first.keys
    assert keyring.load(settings, "secrets") == rotated
    assert keyring.load(settings, "links") == links  # the other purposes are left alone
    with pytest.raises(ValueError, match="newest"):
        keyring.retire(settings, "secrets", rotated.current[0])
    with pytest.raises(ValueError, match="no secrets key"):
        keyring.retire(settings, "secrets", "nope")
    retired = keyring.retire(settings, "secrets", first.current[0])
    assert retired.keys == rotated.keys[:1]
    assert keyring.load(settings, "secrets") == retired
    assert stat.S_IMODE(keyring.keyring_file(settings).stat().st_mode) == 0o600


def test_unknown_purpose(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such key purpose"):
        keyring.load(Settings(home=tmp_path), "cookies")

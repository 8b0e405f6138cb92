"""The operator's bearer token: ``METERLY_ADMIN_TOKEN``, or one generated once and kept."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from processors.runtime.settings import Settings


def token_file(settings: Settings) -> Path:
    return settings.home / "admin-token"


def ensure_admin_token(settings: Settings) -> tuple[str, bool]:
    """The operator token, and whether it was generated just now (to print it once)."""
    if settings.admin_token:
        return settings.admin_token, False
    path = token_file(settings)
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "mop_" + secrets.token_urlsafe(32)
    # Created readable by its owner only: it grants every operator action.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token, True


def read_admin_token(settings: Settings) -> str:
    if settings.admin_token:
        return settings.admin_token
    path = token_file(settings)
    if not path.exists():
        raise RuntimeError("no operator token: set METERLY_ADMIN_TOKEN, or start with "
                           "`meterly run`, which generates one")
    return path.read_text().strip()

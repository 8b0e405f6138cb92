"""What the ``meterly`` commands print, and how they call the operator API.

Messages for people go to stderr as ``meterly: ...``; results go to stdout, so they can be
piped. Every command that talks to Meterly goes through the gateway's operator API.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from processors.runtime.operator_token import read_admin_token
from processors.runtime.settings import get_settings


def say(message: str) -> None:
    print(f"meterly: {message}", file=sys.stderr, flush=True)


def gateway_url(url: str | None) -> str:
    """``--url``, or where this deployment's gateway answers."""
    return (url or get_settings().public_base_url).rstrip("/")


def operator_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {read_admin_token(get_settings())}"}


def problem_detail(answer: httpx.Response) -> Any:
    """The ``detail`` of a problem answer, or the body of any other error answer."""
    if answer.headers.get("content-type", "").startswith("application/problem+json"):
        return answer.json().get("detail")
    return answer.text

"""The worker processes ``meterly run`` supervises, by name (``meterly worker NAME``)."""

from __future__ import annotations

from collections.abc import Callable

from ops.settings import Settings

#: Worker name -> function that runs the worker until it is stopped.
WORKERS: dict[str, Callable[[Settings], None]] = {}

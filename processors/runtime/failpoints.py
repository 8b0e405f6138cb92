"""Named failpoints: a worker SIGKILLs itself at a named step of its protocol, for tests.

``METERLY_FAILPOINTS`` lists ``name`` or ``name@n`` entries separated by commas: the worker
kills itself the n-th time (default: the first) it reaches that step. Off unless the
variable is set, which production never does; reaching a failpoint costs a dictionary lookup.
Before it dies, the worker writes ``failpoint <name> reached`` to stderr, unbuffered, so the
test can show the fault landed exactly there. A restarted worker starts counting afresh; a
test that wants one kill per step sets the variable for the first start only.
"""

from __future__ import annotations

import os
import signal
import sys


def parse_plan(text: str) -> dict[str, int]:
    """``"a,b@3"`` -> ``{"a": 1, "b": 3}``."""
    plan: dict[str, int] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, _, nth = entry.partition("@")
        plan[name] = int(nth) if nth else 1
    return plan


_PLAN = parse_plan(os.environ.get("METERLY_FAILPOINTS", ""))
_SEEN: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if the test armed ``name`` for this arrival."""
    if not _PLAN or name not in _PLAN:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] == _PLAN[name]:
        sys.stderr.write(f"failpoint {name} reached\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

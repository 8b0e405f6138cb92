"""Named failpoints (processors/runtime/failpoints.py): parsed, off by default, and a kill
at exactly the armed arrival."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from processors.runtime.failpoints import parse_plan

SCRIPT = """
from processors.runtime.failpoints import failpoint
for i in range(1, 6):
    print(i, flush=True)
    failpoint("step")
"""


def test_a_plan_names_steps_and_arrivals() -> None:
    assert parse_plan("") == {}
    assert parse_plan("a, b@3 ,") == {"a": 1, "b": 3}


def _run(plan: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "METERLY_FAILPOINTS"}
    if plan is not None:
        env["METERLY_FAILPOINTS"] = plan
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_unarmed_failpoints_do_nothing() -> None:
    done = _run(None)
    assert done.returncode == 0
    assert done.stdout.split() == ["1", "2", "3", "4", "5"]


def test_an_armed_failpoint_kills_at_its_arrival_and_says_so() -> None:
    done = _run("step@3")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2", "3"]
    assert "failpoint step reached" in done.stderr

"""The commit watchdog (processors/kafka/transactions.py): a guarded call that outlives its
deadline ends the process with status 1 and says why; one that finishes in time, and a
process that outlives an expired guard's block, are left alone."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys, time
from processors.kafka.transactions import Watchdog
logging.basicConfig(level=logging.INFO)
dog = Watchdog(check_every=0.05)
with dog.guard("quick step", 0.5):
    time.sleep(0.1)
time.sleep(0.8)  # past the quick step's deadline, but outside its guard
print("after quick", flush=True)
with dog.guard("stuck step", float(sys.argv[1])):
    time.sleep(3.0)
print("after stuck", flush=True)
"""


def _run(deadline: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(deadline)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_call_past_its_deadline_exits_the_process_and_says_why() -> None:
    done = _run(0.5)
    assert done.returncode == 1
    assert done.stdout.split("\n")[:2] == ["after quick", ""]
    assert "stuck step not done after 0.5s; exiting so that the worker is restarted" \
        in done.stderr
    assert "quick step" not in done.stderr


def test_calls_within_their_deadline_are_left_alone() -> None:
    done = _run(10.0)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["after", "quick", "after", "stuck"]

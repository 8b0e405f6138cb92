"""The supervisor restarts dead children with back-off and stops every child on request."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import pytest

from ops.supervisor import (
    MAX_BACKOFF,
    MIN_BACKOFF,
    STABLE_AFTER,
    ProcessSpec,
    Supervisor,
    next_backoff,
)


def test_backoff_doubles_on_quick_deaths_and_resets_when_stable() -> None:
    assert next_backoff(1.0, uptime=0.5) == 2.0
    assert next_backoff(16.0, uptime=0.5) == MAX_BACKOFF
    assert next_backoff(MAX_BACKOFF, uptime=1.0) == MAX_BACKOFF
    assert next_backoff(MAX_BACKOFF, uptime=STABLE_AFTER) == MIN_BACKOFF


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_dead_worker_is_restarted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ops.supervisor")
    steady = ProcessSpec("steady", [sys.executable, "-c", "import time; time.sleep(120)"])
    crasher = ProcessSpec("crasher", [sys.executable, "-c", "raise SystemExit(7)"])
    sup = Supervisor([steady, crasher], grace=5)
    thread = threading.Thread(target=sup.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while sup.restarts()["crasher"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        steady_pid = sup.pids()["steady"]
        assert sup.restarts() == {"steady": 0, "crasher": 2} or sup.restarts()["crasher"] >= 2
        assert sup.restarts()["steady"] == 0
        exits = [r for r in caplog.records if "exited with status 7" in r.getMessage()]
        assert len(exits) >= 2
        assert exits[0].child == "crasher"
    finally:
        sup.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert steady_pid is not None
    assert not _alive(steady_pid)


def test_stop_kills_a_child_that_ignores_sigterm(caplog: pytest.LogCaptureFixture,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.WARNING, logger="ops.supervisor")
    grace = 1.0
    stubborn = ProcessSpec("stubborn", [sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"])
    sup = Supervisor([stubborn], grace=grace)
    thread = threading.Thread(target=sup.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        # The child inherits this process's stdout: its "ready" line says SIGTERM is ignored
        # from now on, so the stop below must escalate (a SIGTERM sent earlier would just
        # kill it and prove nothing).
        printed = ""
        deadline = time.monotonic() + 30
        while "ready" not in printed:
            assert time.monotonic() < deadline, "the child never printed its ready line"
            time.sleep(0.05)
            printed += capfd.readouterr().out
        pid = sup.pids()["stubborn"]
        assert pid is not None
        assert _alive(pid)
    finally:
        asked = time.monotonic()
        sup.stop()
        thread.join(timeout=15)
    took = time.monotonic() - asked
    assert not thread.is_alive()
    assert not _alive(pid)
    assert os.getpid() != pid
    # SIGTERM was ignored for the whole grace period, then SIGKILL ended it.
    assert took >= grace, f"stopped after {took:.2f} s, before the {grace} s grace ended"
    assert any("ignored SIGTERM; killing it" in r.getMessage() for r in caplog.records)

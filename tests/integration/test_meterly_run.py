"""`meterly run` serves on its port and stops cleanly on Ctrl-C, twice in a row."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from processors.runtime.settings import Settings
from tests.stack import wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_run_starts_and_stops_cleanly_twice(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "METERLY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "METERLY_CASSANDRA_HOSTS": settings.cassandra_hosts or "",
        "METERLY_CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
        "METERLY_TOPIC_PREFIX": settings.topic_prefix,
        "METERLY_HOME": str(tmp_path / "home"),
    }
    for attempt in range(2):
        log = (tmp_path / f"run-{attempt}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "run", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            ready = None
            while time.monotonic() < deadline:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, (tmp_path / f"run-{attempt}.log").read_text()
                    time.sleep(0.3)
            assert ready is not None, "the gateway never answered"
            assert ready.status_code == 200, ready.text
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5, follow_redirects=True)
            assert page.status_code == 200
            assert page.url.path == "/console/login"  # the console, behind its sign-in
            status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=5)
            assert status.status_code == 200
            assert "ready" in status.text
            children = _descendants(proc.pid)
            assert children, "the gateway runs as a child process"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        # The children exit with it (its stop waits for them; a reparented straggler would
        # show here).
        wait_until("every child gone", lambda: not [c for c in children if _alive(c)],  # noqa: B023
                   timeout=10, every=0.1)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "port still served after stop"

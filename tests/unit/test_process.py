"""Service start failures are loud: exit status, log tail, busy ports, health-check timeouts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from ops.infra.artifacts import ProvisioningError
from ops.infra.process import Service, running_pid, start, stop


def _service(tmp_path: Path, code: str, ready: bool = False,
             ports: list[tuple[str, int]] | None = None) -> Service:
    marker = f"meterly-test-{tmp_path.name}"
    return Service(
        name="fake",
        argv=[sys.executable, "-c", code, marker],
        workdir=tmp_path,
        log=tmp_path / "fake.log",
        pidfile=tmp_path / "fake.pid",
        marker=marker,
        ports=ports or [],
        ready=lambda: ready,
    )


def test_a_crashing_service_reports_its_exit_status_and_log(tmp_path: Path) -> None:
    service = _service(tmp_path, "print('bad setting: log.dirs', flush=True); raise SystemExit(3)")
    with pytest.raises(ProvisioningError) as excinfo:
        start(service, timeout=10)
    assert "exited with status 3" in str(excinfo.value)
    assert "bad setting: log.dirs" in str(excinfo.value)
    assert not service.pidfile.exists()


def test_a_service_that_never_gets_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    service = _service(tmp_path, "import time; time.sleep(60)")
    with pytest.raises(ProvisioningError, match="not ready in 1s"):
        start(service, timeout=1)
    assert running_pid(service) is None


@pytest.mark.loopback
def test_a_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = _service(tmp_path, "pass", ports=[("127.0.0.1", port)])
        with pytest.raises(ProvisioningError, match=f"127.0.0.1:{port} already in use"):
            start(service, timeout=5)


def test_start_is_idempotent_and_stop_ends_the_process(tmp_path: Path) -> None:
    service = _service(tmp_path, "import time; time.sleep(60)", ready=True)
    assert start(service, timeout=5) is True
    pid = running_pid(service)
    assert pid is not None
    assert start(service, timeout=5) is False
    assert running_pid(service) == pid
    assert stop(service, grace=5) is True
    assert running_pid(service) is None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()

"""Background service processes: start with a health check, find again by pid file, stop.

A pid file alone can point at a recycled pid, so every service is launched with a marker
argument (``-Dmeterly.service=<name>@<state dir>``) and a pid only counts as ours while its
command line still carries that marker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ops.infra.artifacts import ProvisioningError, tail


@dataclass
class Service:
    name: str
    argv: list[str]
    workdir: Path
    log: Path
    pidfile: Path
    marker: str
    #: Loopback (host, port) pairs the service listens on; checked free before a start.
    ports: Sequence[tuple[str, int]]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    """True when no thread of ``pid`` is alive.

    The JVM's main thread may end while its other threads keep the process running; the
    process's own state line then reads "Z", so every thread has to be looked at.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        # The state letter follows the parenthesised command name, which may hold spaces.
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return False
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# Processes launched by this Python process. Their liveness comes from Popen.poll(): the
# /proc command line is briefly unreadable or different while the java launcher execs.
_launched: dict[int, subprocess.Popen[bytes]] = {}


def _exited(service: Service) -> bool:
    try:
        pid = int(service.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return True
    proc = _launched.get(pid)
    if proc is not None:
        return proc.poll() is not None
    return running_pid(service) is None


def running_pid(service: Service) -> int | None:
    """The pid of the live process started for ``service``, if there is one."""
    try:
        pid = int(service.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    proc = _launched.get(pid)
    if proc is not None:
        return pid if proc.poll() is None else None
    cmdline = _cmdline(pid)
    for _ in range(20):
        # Read while the process is still exec'ing, the command line is empty.
        if cmdline or not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
        cmdline = _cmdline(pid)
    if service.marker not in cmdline or _is_zombie(pid):
        _reap(pid)
        return None
    return pid


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resident_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def start(service: Service, timeout: float, wait: bool = True) -> bool:
    """Start ``service`` unless it already runs; return True when this call started it.

    Raises ProvisioningError with the end of the service's log when the process exits or
    does not become ready within ``timeout`` seconds. With ``wait=False`` it returns once
    the process is launched (nodes of a quorum only become ready together), and the caller
    waits with ``wait_ready``.
    """
    if running_pid(service) is not None:
        if _wait_ready(service, timeout, None):
            return False
        raise ProvisioningError(
            f"{service.name} is running but did not answer its health check within "
            f"{timeout:.0f}s; log {service.log}:\n{tail(service.log)}"
        )
    busy = [f"{h}:{p}" for h, p in service.ports if port_open(h, p)]
    if busy:
        raise ProvisioningError(
            f"cannot start {service.name}: {', '.join(busy)} already in use by a process "
            "Meterly did not start. Stop it, or point METERLY_KAFKA_BOOTSTRAP / "
            "METERLY_CASSANDRA_HOSTS at it to use it as an external cluster."
        )
    service.log.parent.mkdir(parents=True, exist_ok=True)
    service.pidfile.parent.mkdir(parents=True, exist_ok=True)
    service.workdir.mkdir(parents=True, exist_ok=True)
    with service.log.open("ab") as out:
        out.write(f"\n==== meterly starting {service.name} at {time.ctime()} ====\n".encode())
        out.flush()
        proc = subprocess.Popen(
            service.argv,
            cwd=service.workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            # Its own session: Ctrl-C in the terminal reaches Meterly, which then stops
            # the services in order instead of every JVM dying at once.
            start_new_session=True,
        )
    service.pidfile.write_text(str(proc.pid))
    _launched[proc.pid] = proc
    if not wait or _wait_ready(service, timeout, proc):
        return True
    exited = proc.poll()
    if exited is None:
        _terminate(proc.pid, grace=5.0)
    service.pidfile.unlink(missing_ok=True)
    why = f"exited with status {exited}" if exited is not None else f"not ready in {timeout:.0f}s"
    raise ProvisioningError(
        f"{service.name} failed to start ({why}); last lines of {service.log}:\n"
        f"{tail(service.log)}"
    )


def wait_ready(services: Sequence[Service], timeout: float) -> None:
    """Wait until every service answers its health check, or fail with the laggard's log."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for service in list(pending):
            if _exited(service):
                raise ProvisioningError(
                    f"{service.name} exited during start; last lines of {service.log}:\n"
                    f"{tail(service.log)}"
                )
            if service.ready():
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            late = pending[0]
            for service in pending:
                stop(service, grace=5.0)
            raise ProvisioningError(
                f"{late.name} not ready in {timeout:.0f}s; last lines of {late.log}:\n"
                f"{tail(late.log)}"
            )
        if pending:
            time.sleep(0.5)


def _wait_ready(service: Service, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if proc is None and _exited(service):
            return False
        if service.ready():
            return True
        time.sleep(0.5)
    return False


def stop(service: Service, grace: float = 60.0) -> bool:
    """Stop ``service`` (SIGTERM, then SIGKILL after ``grace`` seconds); True if it ran."""
    return bool(stop_all([service], grace))


def stop_all(services: Sequence[Service], grace: float = 60.0) -> list[str]:
    """Stop several services at once: SIGTERM to all, then wait, then SIGKILL stragglers.

    Nodes of one quorum are stopped together: a Kafka broker stopped after its peers waits
    for a controller that is gone, until it is killed.
    """
    pids = {}
    for service in services:
        pid = running_pid(service)
        service.pidfile.unlink(missing_ok=True)
        if pid is not None:
            pids[service.name] = pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids.values():
        _terminate(pid, grace=max(0.1, deadline - time.monotonic()))
    return list(pids)


def kill(service: Service) -> bool:
    """SIGKILL ``service`` at once, as a crash would; True if it ran."""
    pid = running_pid(service)
    service.pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    _terminate(pid, grace=0.0)
    return True


def _terminate(pid: int, grace: float) -> None:
    def gone() -> bool:
        _reap(pid)
        return not Path(f"/proc/{pid}").exists() or _is_zombie(pid)

    sig = signal.SIGTERM if grace > 0 else signal.SIGKILL
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if gone():
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if gone():
            return
        time.sleep(0.1)

"""Cold and warm start of the local Kafka + Cassandra, their memory, and two run cycles.

    python -m ops.bench.infra_start

Cold: an empty state directory and an empty Maven repository, so every jar is downloaded.
Warm: the same state directory again. Then ``meterly run`` is started and stopped twice in a
row from that directory, timing readiness of /readyz and the clean stop. Needs the default
ports (9092, 9093, 9042, 7000, 7199) free: stop any other Meterly infra first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ops.infra.stack import LocalStack

PORTS = (9092, 9093, 9042, 7000, 7199)


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _meterly(env: dict[str, str], *args: str) -> float:
    begun = time.monotonic()
    subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, check=True)
    return time.monotonic() - begun


def _memory(home: Path) -> str:
    time.sleep(10)  # let both JVMs settle after start-up
    rows = LocalStack(home).status()
    return ", ".join(f"{r.name} {r.resident_bytes / 2**20:.0f} MiB" for r in rows)


def _run_cycle(env: dict[str, str], port: int) -> tuple[float, float]:
    begun = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "run", "--port", str(port)], env=env)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"meterly run exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    ready = time.monotonic() - begun
    begun = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    stopped = time.monotonic() - begun
    left = [p for p in (*PORTS, port) if _busy(p)]
    if code != 0 or left:
        raise SystemExit(f"unclean stop: exit {code}, ports still open: {left}")
    return ready, stopped


def main() -> None:
    busy = [p for p in PORTS if _busy(p)]
    if busy:
        raise SystemExit(f"ports {busy} are in use; stop other Kafka/Cassandra first")
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp:
        home = Path(tmp) / "home"
        env = {
            **os.environ,
            "METERLY_HOME": str(home),
            "MAVEN_OPTS": f"-Dmaven.repo.local={Path(tmp) / 'm2'}",
        }
        for key in ("METERLY_KAFKA_BOOTSTRAP", "METERLY_CASSANDRA_HOSTS", "METERLY_CACHE"):
            env.pop(key, None)
        cold = _meterly(env, "infra", "up")
        cold_memory = _memory(home)
        _meterly(env, "infra", "down")
        warm = _meterly(env, "infra", "up")
        warm_memory = _memory(home)
        _meterly(env, "infra", "down")
        cycles = [_run_cycle(env, 3000 + 7 * i + 11) for i in range(2)]
    print(f"cold start (download + start): {cold:.1f} s; memory: {cold_memory}")
    print(f"warm start: {warm:.1f} s ({warm / cold:.2f} of cold); memory: {warm_memory}")
    for i, (ready, stopped) in enumerate(cycles, 1):
        print(f"meterly run cycle {i}: /readyz 200 after {ready:.1f} s, "
              f"clean stop in {stopped:.1f} s")


if __name__ == "__main__":
    main()

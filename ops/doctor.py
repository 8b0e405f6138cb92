"""``meterly doctor``: is this machine ready to run Meterly (and, with ``--tests``, its tests)?

One line per check, each with a one-line fix when it fails: Python 3.11, Java 17+, Maven
(both only when Kafka or Cassandra is provisioned locally), Chromium, curl and jq (the
tests), free ports (the HTTP port, 9092, 9042), disk and memory. Exit status 1 when a
required check fails.

The verdicts (``judge_*``) are pure functions of what the probes found, tested without a
machine; the probes are the small functions at the bottom.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from processors.runtime.settings import Settings, get_settings

Verdict = Literal["ok", "warn", "fail"]
GIB = 1 << 30
#: Kafka's and Cassandra's jars, their data and logs, and the Python packages.
DISK_NEEDED = 3 * GIB
#: Kafka (1 GiB heap, about 0.4 GiB resident) and Cassandra (1 GiB heap, about 1.5 GiB).
MEMORY_NEEDED = 3 * GIB
APT = "sudo apt-get install -y"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output ('1.8.0_392' is 8, '17.0.15' is 17)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def judge_python(version: tuple[int, int]) -> Check:
    text = f"{version[0]}.{version[1]}"
    if version == (3, 11):
        return Check("python", "ok", text)
    return Check("python", "fail", f"{text} (Meterly needs 3.11)",
                 f"{APT} python3.11 python3.11-venv, or set METERLY_PYTHON for ops/bootstrap.sh")


def judge_java(version_output: str | None, needed: bool) -> Check:
    fix = f"{APT} openjdk-17-jre-headless"
    if version_output is None:
        if not needed:
            return Check("java", "ok", "not needed (Kafka and Cassandra are external)")
        return Check("java", "fail", "not found", fix)
    major = java_major(version_output)
    if major is None:
        return Check("java", "fail", "its version could not be read", fix)
    if major < 17:
        return Check("java", "fail" if needed else "warn", f"{major} (needs 17 or later)", fix)
    full = re.search(r'version "([^"]+)"', version_output)
    return Check("java", "ok", full.group(1) if full else str(major))


def judge_tool(name: str, found: str | None, required: bool, purpose: str,
               fix: str) -> Check:
    if found:
        return Check(name, "ok", found)
    return Check(name, "fail" if required else "warn", f"not found ({purpose})", fix)


def judge_port(port: int, free: bool, owner: str | None, what: str, fix: str) -> Check:
    name = f"port {port}"
    if free:
        return Check(name, "ok", f"free ({what})")
    if owner:
        return Check(name, "ok", f"in use by {owner}, which Meterly reuses")
    return Check(name, "fail", f"in use by another program ({what})", fix)


def judge_space(name: str, available: int, needed: int, fix: str) -> Check:
    text = f"{available / GIB:.1f} GiB available"
    if available >= needed:
        return Check(name, "ok", text)
    return Check(name, "fail", f"{text}; needs {needed / GIB:.0f} GiB", fix)


def diagnose(settings: Settings, tests: bool, probe: Probes) -> list[Check]:
    local = settings.provisions_kafka or settings.provisions_cassandra
    checks = [
        judge_python(probe.python()),
        judge_java(probe.java(), needed=local or tests),
        judge_tool("maven", probe.which("mvn"), settings.provisions_kafka, "fetches Kafka "
                   "and Cassandra from Maven Central", f"{APT} maven"),
        judge_tool("chromium", os.environ.get("METERLY_CHROMIUM") or probe.which("chromium"),
                   tests, "the console tests", f"{APT} chromium fonts-liberation "
                   "(or set METERLY_CHROMIUM to a Chromium or Chrome binary)"),
        judge_tool("curl", probe.which("curl"), tests, "the README examples", f"{APT} curl"),
        judge_tool("jq", probe.which("jq"), tests, "the README examples", f"{APT} jq"),
    ]
    owners = probe.own_services()
    ports = [(settings.port, "the console and API",
              "stop it, or choose another port with METERLY_PORT or `meterly run --port`")]
    if settings.provisions_kafka:
        ports.append((9092, "Kafka", "stop it, or point METERLY_KAFKA_BOOTSTRAP at it"))
    if settings.provisions_cassandra:
        ports.append((9042, "Cassandra", "stop it, or point METERLY_CASSANDRA_HOSTS at it"))
    for port, what, fix in ports:
        checks.append(judge_port(port, probe.port_free(settings.host, port),
                                 owners.get(port), what, fix))
    checks.append(judge_space("disk", probe.disk_free(settings.home), DISK_NEEDED,
                              "free some space, or set METERLY_HOME to a larger disk"))
    if local:
        checks.append(judge_space("memory", probe.memory_available(), MEMORY_NEEDED,
                                  "stop other programs, or use external clusters "
                                  "(METERLY_KAFKA_BOOTSTRAP, METERLY_CASSANDRA_HOSTS)"))
    return checks


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        line = f"{c.verdict:<4}  {c.name:<{width}}  {c.detail}"
        if c.fix and c.verdict != "ok":
            line += f"\n      {'':<{width}}  fix: {c.fix}"
        lines.append(line)
    failed = sum(c.verdict == "fail" for c in checks)
    lines.append("ready" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


# The probes: what the machine has.

@dataclass(frozen=True)
class Probes:
    python: Callable[[], tuple[int, int]]
    java: Callable[[], str | None]
    which: Callable[[str], str | None]
    port_free: Callable[[str, int], bool]
    own_services: Callable[[], dict[int, str]]
    disk_free: Callable[[Path], int]
    memory_available: Callable[[], int]


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        return None
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stderr + done.stdout


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _disk_free(path: Path) -> int:
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _memory_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _own_services(settings: Settings) -> Callable[[], dict[int, str]]:
    def owners() -> dict[int, str]:
        from ops.infra.stack import LocalStack

        found = {}
        for row in LocalStack(settings.home, settings.cache_dir).status():
            if row.pid:
                found[int(row.endpoint.rsplit(":", 1)[1])] = f"Meterly's own {row.name}"
        return found

    return owners


def machine_probes(settings: Settings) -> Probes:
    return Probes(python=lambda: (sys.version_info[0], sys.version_info[1]), java=_java,
                  which=shutil.which, port_free=_port_free,
                  own_services=_own_services(settings), disk_free=_disk_free,
                  memory_available=_memory_available)


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = get_settings()
    checks = diagnose(settings, args.tests, machine_probes(settings))
    print(report(checks))
    return 1 if any(c.verdict == "fail" for c in checks) else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check that this machine can run Meterly "
                            "(and its tests, with --tests)")
    doctor.add_argument("--tests", action="store_true",
                        help="also require what ./ops/test.sh needs (Chromium, curl, jq)")
    doctor.set_defaults(func=cmd_doctor)

"""`meterly doctor`'s verdicts, from made-up machine facts (no machine needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ops.doctor import GIB, Probes, diagnose, java_major, report
from processors.runtime.settings import Settings

JAVA17 = 'openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6)'
JAVA8 = 'openjdk version "1.8.0_392"\nOpenJDK Runtime Environment (build 1.8.0_392-b08)'


@pytest.mark.parametrize(("output", "major"), [
    (JAVA17, 17), (JAVA8, 8), ('java version "21" 2023-09-19 LTS', 21),
    ('openjdk version "11.0.2" 2019-01-15', 11), ("no version here", None)])
def test_java_major_reads_old_and_new_version_strings(output: str, major: int | None) -> None:
    assert java_major(output) == major


def ready_machine() -> Probes:
    return Probes(python=lambda: (3, 11), java=lambda: JAVA17,
                  which=lambda name: f"/usr/bin/{name}", port_free=lambda _h, _p: True,
                  own_services=dict, disk_free=lambda _path: 50 * GIB,
                  memory_available=lambda: 20 * GIB)


def verdicts(settings: Settings, tests: bool, probes: Probes) -> dict[str, str]:
    return {c.name: c.verdict for c in diagnose(settings, tests, probes)}


def local(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, kafka_bootstrap=None, cassandra_hosts=None)


def test_a_ready_machine_passes_every_check(tmp_path: Path) -> None:
    checks = diagnose(local(tmp_path), True, ready_machine())
    assert {c.name for c in checks} == {
        "python", "java", "maven", "chromium", "curl", "jq", "port 3000", "port 9092",
        "port 9042", "disk", "memory"}
    assert all(c.verdict == "ok" for c in checks), checks
    assert report(checks).endswith("\nready")


def test_missing_tools_fail_with_the_command_that_installs_them(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.delenv("METERLY_CHROMIUM", raising=False)
    bare = replace(ready_machine(), java=lambda: None,
                   which=lambda name: None if name in ("mvn", "chromium", "jq") else name)
    checks = {c.name: c for c in diagnose(local(tmp_path), True, bare)}
    assert checks["java"].verdict == "fail"
    assert checks["java"].fix == "sudo apt-get install -y openjdk-17-jre-headless"
    assert checks["maven"].fix == "sudo apt-get install -y maven"
    assert checks["chromium"].verdict == "fail"
    assert checks["chromium"].fix.startswith("sudo apt-get install -y chromium fonts-liberation")
    assert checks["jq"].fix == "sudo apt-get install -y jq"
    assert checks["curl"].verdict == "ok"
    text = report(list(checks.values()))
    assert "fix: sudo apt-get install -y jq" in text
    assert text.endswith("4 check(s) failed")


def test_test_tools_only_warn_when_not_running_the_tests(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METERLY_CHROMIUM", raising=False)
    no_browser = replace(ready_machine(), which=lambda n: None if n == "chromium" else n)
    assert verdicts(local(tmp_path), False, no_browser)["chromium"] == "warn"
    assert verdicts(local(tmp_path), True, no_browser)["chromium"] == "fail"
    monkeypatch.setenv("METERLY_CHROMIUM", "/opt/chrome/chrome")
    assert verdicts(local(tmp_path), True, no_browser)["chromium"] == "ok"


def test_old_java_and_wrong_python_fail(tmp_path: Path) -> None:
    old = replace(ready_machine(), java=lambda: JAVA8, python=lambda: (3, 12))
    found = verdicts(local(tmp_path), False, old)
    assert found["java"] == "fail"
    assert found["python"] == "fail"


def test_external_clusters_need_no_java_maven_local_ports_or_memory(tmp_path: Path) -> None:
    external = Settings(home=tmp_path, kafka_bootstrap="kafka:9092", cassandra_hosts="cass:9042")
    bare = replace(ready_machine(), java=lambda: None, which=lambda n: None,
                   memory_available=lambda: 1 * GIB)
    found = verdicts(external, False, bare)
    assert found["java"] == "ok"
    assert found["maven"] == "warn"  # not required: nothing is fetched from Maven Central
    assert "port 9092" not in found
    assert "port 9042" not in found
    assert "memory" not in found
    assert not [name for name, verdict in found.items() if verdict == "fail"]


def test_a_busy_port_fails_unless_meterly_itself_holds_it(tmp_path: Path) -> None:
    busy = replace(ready_machine(), port_free=lambda _h, port: port != 9092)
    assert verdicts(local(tmp_path), False, busy)["port 9092"] == "fail"
    ours = replace(busy, own_services=lambda: {9092: "Meterly's own kafka-1"})
    checks = {c.name: c for c in diagnose(local(tmp_path), False, ours)}
    assert checks["port 9092"].verdict == "ok"
    assert "Meterly's own kafka-1" in checks["port 9092"].detail


def test_small_disk_and_little_memory_fail(tmp_path: Path) -> None:
    small = replace(ready_machine(), disk_free=lambda _p: GIB, memory_available=lambda: GIB)
    checks = {c.name: c for c in diagnose(local(tmp_path), False, small)}
    assert checks["disk"].verdict == "fail"
    assert "METERLY_HOME" in checks["disk"].fix
    assert checks["memory"].verdict == "fail"

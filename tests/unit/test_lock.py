"""The environment the tests run in is exactly uv.lock: every package the lock resolves for
this platform (Meterly, its dependencies and the dev group) is installed at the locked
version, and nothing else is installed."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import Marker

LOCK = Path(__file__).resolve().parents[2] / "uv.lock"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(dep: dict[str, Any]) -> bool:
    marker = dep.get("marker")
    return marker is None or Marker(marker).evaluate()


def locked_for_this_platform() -> dict[str, str]:
    """The lock's packages reachable from ``meterly`` (with its dev group), name -> version."""
    packages = {_canonical(p["name"]): p for p in tomllib.loads(LOCK.read_text())["package"]}
    root = packages["meterly"]
    todo = [*root["dependencies"], *root["dev-dependencies"]["dev"]]
    wanted: dict[str, str] = {"meterly": root["version"]}
    seen_extras: dict[str, set[str]] = {}
    while todo:
        dep = todo.pop()
        if not _applies(dep):
            continue
        name = _canonical(dep["name"])
        package = packages[name]
        extras = set(dep.get("extra", [])) - seen_extras.setdefault(name, set())
        if name in wanted and not extras:
            continue
        if name not in wanted:
            wanted[name] = package["version"]
            todo.extend(package.get("dependencies", []))
        for extra in extras:
            seen_extras[name].add(extra)
            todo.extend(package.get("optional-dependencies", {}).get(extra, []))
    return wanted


def installed() -> dict[str, str]:
    return {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_the_installed_packages_are_exactly_the_lock() -> None:
    want, have = locked_for_this_platform(), installed()
    assert len(want) > 80  # the whole tree, not only the direct dependencies
    wrong = {n: (have.get(n), v) for n, v in want.items() if have.get(n) != v}
    extra = sorted(set(have) - set(want))
    assert not wrong, f"installed vs locked: {wrong}"
    assert not extra, f"installed but not in uv.lock: {extra}"


def test_the_lock_pins_every_package_by_hash() -> None:
    for package in tomllib.loads(LOCK.read_text())["package"]:
        if package["source"].get("editable"):
            continue
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files, package["name"]
        assert all(f["hash"].startswith("sha256:") for f in files), package["name"]

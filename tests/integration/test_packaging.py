"""The wheel holds Meterly, not its benchmarks or demo, and what the gateway serves."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_leaves_out_benchmarks_and_the_demo(tmp_path: Path) -> None:
    uv = next((REPO / ".meterly" / "cache" / "tools").glob("uv-*/bin/uv"), None) or \
        shutil.which("uv")
    assert uv, "ops/bootstrap.sh installs uv under .meterly/cache/tools"
    # Built from a copy of the tracked files, so the checkout gets no build/ or egg-info.
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([str(uv), "build", "--wheel", "-q", "-o", str(tmp_path / "dist")],
                   cwd=source, check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("meterly-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("ops/bench/", "ops/demo/"))]
    for shipped in ("ops/cli.py", "processors/usage/counter.py", "gateway/static/console.js",
                    "gateway/templates/docs.html", "storage/migrations/0001_usage_counters.cql"):
        assert shipped in names, shipped

"""How long installing Meterly's Python packages takes: ``uv sync --frozen`` from uv.lock
(what ./ops/run.sh and ./ops/test.sh do), cold (empty cache) and warm, beside a baseline
measured in the same run: pip installing the same locked set into a fresh venv, cold.

Needs the network (PyPI) and ``ops/bootstrap.sh`` to have installed uv.

    .venv/bin/python -m ops.bench.install
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    began = time.monotonic()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - began


def main() -> None:
    uv = next((REPO / ".meterly" / "cache" / "tools").glob("uv-*/bin/uv"), None)
    if uv is None:
        raise SystemExit("run ops/bootstrap.sh first (it installs uv)")
    with tempfile.TemporaryDirectory(prefix="meterly-install-") as tmp_name:
        tmp = Path(tmp_name)
        for name in ("pyproject.toml", "uv.lock", "README.md"):
            shutil.copy2(REPO / name, tmp / name)
        for package in ("gateway", "processors", "schemas", "storage", "ops"):
            shutil.copytree(REPO / package, tmp / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "UV_CACHE_DIR": str(tmp / "uv-cache"), "UV_PYTHON": sys.executable,
               "UV_PYTHON_DOWNLOADS": "never", "PIP_CACHE_DIR": str(tmp / "pip-cache")}
        env.pop("VIRTUAL_ENV", None)
        cold = timed([str(uv), "sync", "--frozen", "-q"],
                     {**env, "UV_PROJECT_ENVIRONMENT": str(tmp / "venv-cold")}, tmp)
        warm = timed([str(uv), "sync", "--frozen", "-q"],
                     {**env, "UV_PROJECT_ENVIRONMENT": str(tmp / "venv-warm")}, tmp)
        again = timed([str(uv), "sync", "--frozen", "-q"],
                      {**env, "UV_PROJECT_ENVIRONMENT": str(tmp / "venv-warm")}, tmp)
        pinned = tmp / "requirements.txt"
        pinned.write_text(subprocess.run(
            [str(uv), "export", "--frozen", "--no-hashes", "--no-emit-project", "-q"],
            env=env, cwd=tmp, check=True, capture_output=True, text=True).stdout)
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv-pip")], check=True)
        pip = [str(tmp / "venv-pip" / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
        baseline = timed([*pip, "--no-deps", "-r", str(pinned)], env, tmp)
    print("installing the locked Python packages (dev group included):")
    print(f"  uv sync --frozen, empty cache:          {cold:6.1f} s")
    print(f"  uv sync --frozen, warm cache, new venv: {warm:6.1f} s")
    print(f"  uv sync --frozen, nothing to do:        {again:6.1f} s")
    print(f"  baseline: pip install -r (same pins), empty cache: {baseline:6.1f} s "
          f"(uv cold is {cold / baseline:.2f} of it)")


if __name__ == "__main__":
    main()

"""The README's examples, run as written against Meterly started by ``./ops/run.sh``.

The kinds of example and how answers match are in ``tests/readme_examples.py``. What this
test changes in an example, and nothing else: ``localhost:3000`` becomes the port it
started Meterly on (every test picks a free port), and in the Kafka example the broker
address and the topic prefix become the test run's own. ``curl`` runs with
``--fail-with-body`` added (a shim first on PATH), so an HTTP error answer fails the example
unless its block is marked ``refused``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ops.cli import build_parser
from processors.runtime.settings import Settings
from storage.object_store import open_object_store
from tests.infra import Infra, S3Endpoint
from tests.readme_examples import Example, answer_matches, exported, read
from tests.stack import env_without_meterly, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
#: The values this test gives the README's "own Kafka and Cassandra" variables.
BLOCK_TIMEOUT = 180.0
EVENTUALLY = 60.0


def settings_blocks() -> list[Example]:
    return [e for e in read() if e.kind == "settings"]


def run_settings() -> dict[str, str]:
    """The variables of the settings block that ends in ``./ops/run.sh``."""
    (block,) = [e for e in settings_blocks() if e.text.strip().endswith("./ops/run.sh")]
    return exported(block.text)


@dataclass
class Meterly:
    port: int
    home: Path
    topic_prefix: str
    kafka_bootstrap: str
    log: Path


@pytest.fixture(scope="module")
def meterly(infra: Infra, settings: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Meterly]:
    """Meterly as the README's start example starts it, with the README's "own clusters"
    variables set to this run's clusters."""
    (start,) = [e for e in read() if e.kind == "start"]
    command = shlex.split(start.text)
    assert command == ["./ops/run.sh"], f"{start.where()}: the start example changed"
    # The run's own credentials (empty where its clusters take none: empty is unset).
    ours = {
        **{name: os.environ.get(name, "") for name in (
            "METERLY_KAFKA_SECURITY_PROTOCOL", "METERLY_KAFKA_SASL_MECHANISM",
            "METERLY_KAFKA_SASL_USERNAME", "METERLY_KAFKA_SASL_PASSWORD",
            "METERLY_CASSANDRA_USERNAME", "METERLY_CASSANDRA_PASSWORD")},
        "METERLY_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "METERLY_CASSANDRA_HOSTS": infra.cassandra_hosts,
        "METERLY_KAFKA_REPLICATION_FACTOR": "1",
        "METERLY_CASSANDRA_REPLICATION": "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    }
    named = run_settings()
    assert set(named) == set(ours), (
        f"the README's own-clusters variables are {sorted(named)}; this test sets "
        f"{sorted(ours)}")
    tmp = tmp_path_factory.mktemp("readme")
    port = free_port()
    prefix = f"{settings.topic_prefix}readme."
    env = {**env_without_meterly(), **ours, "METERLY_PORT": str(port),
           "METERLY_HOME": str(tmp / "home"),
           # The downloads (uv, jars) of this checkout, not new ones under the new home.
           "METERLY_CACHE": str(Settings().cache_dir),
           "METERLY_CASSANDRA_KEYSPACE": f"{settings.cassandra_keyspace}_readme",
           "METERLY_TOPIC_PREFIX": prefix}
    log = tmp / "run.log"
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"./ops/run.sh exited:\n{log.read_text()[-4000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield Meterly(port, tmp / "home", prefix, infra.kafka_bootstrap, log)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Shell:
    """One shell session across blocks: each block runs in a new bash, with the variables
    earlier blocks set (``declare -p`` of every variable a fresh bash lacks)."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.state = work / ".readme-state.sh"
        self.state.write_text("")
        baseline = subprocess.run(["bash", "-c", "compgen -v"], env=env, cwd=work,
                                  capture_output=True, text=True, check=True).stdout
        (work / ".readme-baseline").write_text(baseline + "names\n")

    def run(self, example: Example, text: str,
            http_errors_ok: bool = False) -> subprocess.CompletedProcess[str]:
        if example.kind == "python":
            body = f".venv/bin/python - <<'METERLY_README_PY'\n{text}\nMETERLY_README_PY\n"
            keep = ""
        else:
            body = text + "\n"
            keep = ('names=$(compgen -v | grep -vxF -f .readme-baseline || true)\n'
                    'if [ -n "$names" ]; then declare -p $names > .readme-state.next; '
                    'else : > .readme-state.next; fi\n')
        script = f"set -euo pipefail\nsource .readme-state.sh\n{body}{keep}"
        env = {**self.env, **({"README_HTTP_ERRORS_OK": "1"} if http_errors_ok else {})}
        done = subprocess.run(["bash", "-c", script], cwd=self.work, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        if done.returncode != 0:
            raise AssertionError(
                f"{example.where()}: the example failed (exit {done.returncode})\n"
                f"--- example\n{text}\n--- stdout\n{done.stdout[-3000:]}\n"
                f"--- stderr\n{done.stderr[-3000:]}")
        if keep:
            (self.work / ".readme-state.next").replace(self.state)
        return done


def curl_shim(directory: Path) -> Path:
    real = shutil.which("curl")
    assert real, "curl is needed for the README examples (ops/bootstrap.sh --tests installs it)"
    directory.mkdir()
    shim = directory / "curl"
    shim.write_text(
        "#!/bin/sh\n# The README test's curl: an HTTP error answer fails the example.\n"
        f'if [ -n "$README_HTTP_ERRORS_OK" ]; then exec {real} "$@"; fi\n'
        f'exec {real} --fail-with-body "$@"\n')
    shim.chmod(0o755)
    return directory


def localize(example: Example, meterly: Meterly) -> str:
    # The Kafka example takes its addresses and topic from `meterly ingest credentials`,
    # which answers with this deployment's own.
    return example.text.replace("localhost:3000", f"localhost:{meterly.port}")


def test_every_readme_example_runs_as_written_and_answers_as_shown(
        meterly: Meterly, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # The README is read from a checkout: .venv and .meterly are where it says.
    (work / ".venv").symlink_to(REPO / ".venv")
    (work / ".meterly").symlink_to(meterly.home)
    env = {**env_without_meterly(), "METERLY_PORT": str(meterly.port),
           "PATH": f"{curl_shim(tmp_path / 'shim')}{os.pathsep}{os.environ['PATH']}"}
    shell = Shell(work, env)
    examples = read()
    ran = answered = 0
    previous: tuple[Example, str, subprocess.CompletedProcess[str]] | None = None
    for example in examples:
        if example.kind in ("run", "python"):
            text = localize(example, meterly)
            previous = (example, text,
                        shell.run(example, text, http_errors_ok=example.flag == "refused"))
            ran += 1
        elif example.kind == "answer":
            assert previous is not None
            block, text, done = previous
            deadline = time.monotonic() + (EVENTUALLY if example.flag == "eventually" else 0)
            while not answer_matches(example, done.stdout):
                assert time.monotonic() < deadline, (
                    f"{example.where()}: the answer of {block.where()} is not as shown\n"
                    f"--- shown\n{example.text}\n--- printed\n{done.stdout[-3000:]}")
                time.sleep(1)
                done = shell.run(block, text)
            answered += 1
    assert ran >= 10, ran
    assert answered >= 8, answered
    # What the examples did is really there: the invoice they downloaded is a PDF.
    assert (work / "invoice.pdf").read_bytes().startswith(b"%PDF-")


def test_every_meterly_command_in_the_synopsis_exists() -> None:
    (synopsis,) = [e for e in read() if e.kind == "synopsis"]
    commands = 0
    for line in synopsis.text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != ".venv/bin/meterly":
            continue
        path: list[str] = []
        choices: list[str] = []
        for word in words[1:]:
            if "|" in word:
                choices = word.split("|")
                break
            if not word.replace("-", "").isalpha() or not word.islower():
                break
            path.append(word)
        assert path, f"{synopsis.where()}: no command in {line!r}"
        with pytest.raises(SystemExit) as shown:
            build_parser().parse_args([*path, "--help"])
        assert shown.value.code == 0, f"`meterly {' '.join(path)}` does not exist"
        if choices:
            usage = subprocess.run([str(REPO / ".venv/bin/meterly"), *path, "--help"],
                                   capture_output=True, text=True, check=True).stdout
            missing = [c for c in choices if c not in usage]
            assert not missing, f"`meterly {' '.join(path)}` lacks {missing}"
        commands += 1
    assert commands >= 10


def test_the_ci_example_is_what_ci_runs() -> None:
    (ci,) = [e for e in read() if e.kind == "ci"]
    assert ci.text.strip() == "./ops/test.sh"
    run = (REPO / ".ci" / "run").read_text()
    commands = [line for line in run.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == "exec bash ops/test.sh", commands


def test_settings_in_the_readme_are_settings() -> None:
    fields = {f"METERLY_{name.upper()}" for name in Settings.model_fields}
    for block in settings_blocks():
        unknown = set(exported(block.text)) - fields
        assert not unknown, f"{block.where()}: not Meterly settings: {sorted(unknown)}"


def test_the_object_store_settings_store_and_link_a_pdf(s3_endpoint: S3Endpoint,
                                                        tmp_path: Path) -> None:
    """The S3 example's variables, with this run's S3Proxy as the endpoint and its keys."""
    (block,) = [e for e in settings_blocks() if "METERLY_OBJECT_STORE_URL" in e.text]
    named = exported(block.text)
    ours = {"METERLY_S3_ENDPOINT_URL": s3_endpoint.url,
            "METERLY_S3_ACCESS_KEY": s3_endpoint.access_key or "",
            "METERLY_S3_SECRET_KEY": s3_endpoint.secret_key or "",
            "METERLY_S3_REGION": s3_endpoint.region}
    values = {name: ours.get(name, value) for name, value in named.items()}
    assert values["METERLY_OBJECT_STORE_URL"].startswith("s3://")
    settings = Settings(home=tmp_path, **{name.removeprefix("METERLY_").lower(): value
                                          for name, value in values.items()})
    store = open_object_store(settings, "http://127.0.0.1:1", b"k" * 32)
    assert settings.object_store_url is not None
    key = f"readme/{tmp_path.name}.pdf"
    store.put(key, b"%PDF-1.4 readme", "application/pdf")
    assert store.get(key) == b"%PDF-1.4 readme"
    assert httpx.get(store.link(key, timedelta(minutes=1))).content == b"%PDF-1.4 readme"

"""Meter definitions through the operator API and the CLI (issue 15, step 2 of
docs/meters.md): versioned on the admin topic, validated with the reason, the aggregation
fixed per meter, every version audited and readable from every gateway."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.runtime.settings import Settings
from tests.stack import Stack, env_without_meterly, start_stack, wait_until

pytestmark = pytest.mark.integration
#: A key of this run's own: the audit log is shared by every test of the session.
KEY = f"llm_tokens_{secrets.token_hex(3)}"
LLM: dict[str, Any] = {
    "key": KEY, "event_type": "llm.tokens", "aggregation": "sum",
    "group_by": {"model": "model"}, "value_dimension": "token_type",
    "values": {"input": {"path": "input", "minus": ["cached_input"]},
               "cached_input": {"path": "cached_input", "default": "0"},
               "output": "output"}}


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("meters"), gateways=2,
                     workers=()) as running:
        yield running


def test_a_meter_is_versioned_validated_and_audited(stack: Stack) -> None:
    with stack.client() as admin:
        first = admin.post("/v1/admin/meters", json=LLM)
        assert first.status_code == 201, first.text
        assert first.json()["version"] == 1
        second = admin.post("/v1/admin/meters", json={**LLM, "group_by": {
            "model": "model", "region": "region"}})
        assert second.json()["version"] == 2, second.text
        changed = admin.post("/v1/admin/meters", json={**LLM, "aggregation": "max"})
        assert changed.status_code == 409, changed.text
        assert changed.json()["type"].endswith("/meter-aggregation-fixed")
        wrong = admin.post("/v1/admin/meters", json={**LLM, "values": {
            "input": {"path": "input", "minus": ["nothing"]}}})
        assert wrong.status_code == 422, wrong.text
        assert "not other values" in wrong.json()["detail"]
        assert admin.get(f"/v1/admin/meters/{KEY}/versions/1").json()["group_by"] == {
            "model": "model"}
        assert admin.get("/v1/admin/meters/nothing").status_code == 404
        audit = admin.get("/v1/admin/audit", params={"action": "meter."}).json()["data"]
        assert sorted(e["target"] for e in audit if KEY in e["target"]) == [
            f"meter:{KEY}:1", f"meter:{KEY}:2"]
    # The other gateway follows the admin topic: it reads the same latest version.
    with stack.client(1) as other:
        wait_until("the second gateway sees version 2", lambda: other.get(
            f"/v1/admin/meters/{KEY}").json().get("version") == 2, timeout=30)


def test_the_cli_defines_lists_and_shows_meters(stack: Stack, tmp_path: Path) -> None:
    definition = tmp_path / "peak.json"
    definition.write_text(json.dumps({"key": "peak_gb", "event_type": "storage.level",
                                      "aggregation": "max", "value": "gb"}))
    env = {**env_without_meterly(), "METERLY_ADMIN_TOKEN": stack.admin_token,
           "METERLY_PUBLIC_URL": stack.gateways[0].url}

    def meterly(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    made = meterly("meters", "create", str(definition))
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == 1
    listed = meterly("meters", "list")
    assert "peak_gb\tv1\tstorage.level\tmax\t-" in listed.stdout.splitlines()
    shown = meterly("meters", "show", "peak_gb")
    assert json.loads(shown.stdout)["value"] == "gb"
    refused = subprocess.run([sys.executable, "-m", "ops.cli", "meters", "create", "-"],
                             input='{"key": "x", "event_type": "e", "aggregation": "avg"}',
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "error 422" in refused.stderr

"""Every librdkafka client Meterly runs starts from ``processors.kafka.config.client_config``,
so a setting every client needs (connection security, next)
cannot be missed by one of them."""

from __future__ import annotations

from pathlib import Path

from processors.kafka.config import client_config

ROOT = Path(__file__).resolve().parents[2]


def test_clients_start_from_the_bootstrap_servers() -> None:
    assert client_config("a:9092,b:9092") == {"bootstrap.servers": "a:9092,b:9092"}


def test_no_client_is_configured_by_hand() -> None:
    by_hand = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("processors", "gateway", "storage", "ops")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.name != "config.py" and "bench" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if '"bootstrap.servers"' in line
    ]
    assert by_hand == []

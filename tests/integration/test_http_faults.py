"""The HTTP path under faults: gateways SIGKILLed mid-request and Kafka frozen under HTTP
ingest, with clients that retry every batch until it is answered, as the API tells them to.

Each client sends its batches (100 events, ids fixed per batch) to one gateway and, on a
transport error or a 5xx, sends the same batch again, to the other gateway. A gateway killed
with requests in flight may or may not have handed a batch to Kafka; a broker frozen past the
gateways' 10 s delivery timeout makes them answer 503 for batches that may still be
written. Either way the retry carries the same ids, so the counter counts each event once:
the totals must equal the events generated, exactly. Each test shows its fault landed (a
client saw the dead gateway's transport errors, or the 503s with their text) and runs twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from processors.runtime.settings import Settings
from tests.infra import Infra, LocalInfra
from tests.stack import Stack, start_stack, wait_for_usage, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLIENTS = 6
#: Batches a client sends at least; it keeps sending until the test has landed its faults.
BATCHES = 40
EVENTS_PER_BATCH = 100


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("http-faults"), gateways=2) as running:
        yield running


@dataclass(eq=False)  # a thread is hashed by identity
class Client(threading.Thread):
    stack: Stack
    key: str
    index: int
    transport_errors: int = 0
    unavailable: list[str] = field(default_factory=list)
    sent: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        b = 0
        while b < BATCHES or not self.stop.is_set():
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            # Ids fixed per batch: a retry is the same events again.
            yield [{"specversion": "1.0", "id": f"c{self.index}-b{b}-e{e}", "source": "faults",
                    "type": "calls", "time": now} for e in range(EVENTS_PER_BATCH)]
            b += 1

    def run(self) -> None:
        try:
            gateway = self.index % len(self.stack.gateways)
            for batch in self.batches():
                deadline = time.monotonic() + 120
                while True:
                    assert time.monotonic() < deadline, "a batch was never answered"
                    url = self.stack.gateways[gateway].url
                    try:
                        answer = httpx.post(f"{url}/v1/events", json=batch, timeout=30,
                                            headers={"Authorization": f"Bearer {self.key}"})
                    except httpx.TransportError:
                        self.transport_errors += 1
                        gateway = (gateway + 1) % len(self.stack.gateways)
                        time.sleep(0.2)
                        continue
                    if answer.status_code == 503:
                        self.unavailable.append(answer.json()["detail"])
                        time.sleep(float(answer.headers.get("retry-after", "1")))
                        continue
                    assert answer.status_code == 200, answer.text
                    break
                self.sent += len(batch)
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _clients(stack: Stack, key: str) -> list[Client]:
    # Every gateway knows the new key (it reaches the other one through the admin topic).
    for gw in stack.gateways:
        wait_until("the key on every gateway", lambda url=gw.url: httpx.get(
            f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"},
            timeout=5).status_code == 200, timeout=30)
    clients = [Client(stack, key, i) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    return clients


def _finish(clients: list[Client]) -> int:
    """Stop the load; return how many events were answered (each exactly once: a batch's
    ids are its own)."""
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(600)
        assert c.error is None, repr(c.error)
        assert c.sent >= BATCHES * EVENTS_PER_BATCH
    return sum(c.sent for c in clients)


def _flowing(clients: list[Client]) -> bool:
    return all(c.is_alive() for c in clients)


@pytest.mark.parametrize("round_", [1, 2])
def test_gateways_killed_mid_request_lose_nothing_and_count_nothing_twice(
        stack: Stack, round_: int) -> None:
    _tenant, key = stack.new_tenant(f"Gateway kills {round_}")
    clients = _clients(stack, key)
    try:
        for index in (0, 1):
            wanted = 2000 * (index + 1)
            wait_until("load flowing", lambda n=wanted: sum(c.sent for c in clients) >= n,
                       timeout=120)
            before = sum(c.transport_errors for c in clients)
            assert _flowing(clients)
            stack.kill_gateway(index)  # with requests in flight (-9 asserted)
            wait_until("a client to hit the dead gateway", lambda n=before: sum(
                c.transport_errors for c in clients) > n, timeout=30)
            time.sleep(1.0)
            stack.start_gateway(index)
    finally:
        for index, gw in enumerate(stack.gateways):
            if gw.proc.poll() is not None:
                stack.start_gateway(index)
        total = _finish(clients)
    wait_for_usage(stack, key, {"calls": (total, str(total))}, timeout=120)


@pytest.mark.parametrize("round_", [1, 2])
def test_kafka_frozen_under_http_ingest_answers_503_and_loses_nothing(
        stack: Stack, infra: Infra, round_: int) -> None:
    if not isinstance(infra, LocalInfra):
        pytest.skip("the suite freezes only the brokers it provisions")
    _tenant, key = stack.new_tenant(f"Kafka frozen {round_}")
    clients = _clients(stack, key)
    try:
        wait_until("load flowing", lambda: sum(c.sent for c in clients) >= 2000, timeout=120)
        assert _flowing(clients)
        infra.signal("kafka-1", signal.SIGSTOP)
        try:
            # Past the gateways' 10 s delivery timeout: the batches in flight answer 503.
            wait_until("503 answers", lambda: any(c.unavailable for c in clients),
                       timeout=60)
        finally:
            infra.signal("kafka-1", signal.SIGCONT)
    finally:
        total = _finish(clients)
    texts = {t for c in clients for t in c.unavailable}
    assert all("some may have been recorded" in t for t in texts), texts
    wait_for_usage(stack, key, {"calls": (total, str(total))}, timeout=240)

"""Webhooks under faults: a dispatcher SIGKILLed mid-stream loses nothing, and an endpoint
that keeps failing is disabled and shown as such to the operator.

Its own small stack (gateway, admin applier, dispatcher) with a disable-after of seconds
instead of days, so the other webhook tests' failing endpoints are not disabled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from standardwebhooks.webhooks import Webhook

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from schemas import webhooks_v1
from schemas.topics import WEBHOOK_EVENTS
from tests.faults import wait_until_or_false
from tests.stack import Stack, start_stack, wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("webhook-faults"), gateways=1,
            workers=("webhook-dispatcher",),
            extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                       "METERLY_WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1,1",
                       "METERLY_WEBHOOK_BREAKER_COOLDOWN": "1",
                       "METERLY_WEBHOOK_DISABLE_AFTER_SECONDS": "4"}) as running:
        yield running


def _until(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    return wait_until(what, probe, timeout)


def _messages(settings: Settings, stack: Stack, tenant: str, n: int) -> list[str]:
    assert settings.kafka_bootstrap
    producer = Producer({**client_config(settings.kafka_bootstrap), "linger.ms": 5})
    topic = WEBHOOK_EVENTS.full_name(stack.settings.topic_prefix)
    ids = []
    for i in range(n):
        message = webhooks_v1.Message(f"msg_fault_{uuid.uuid4().hex[:12]}",
                                      webhooks_v1.INVOICE_VOIDED, tenant,
                                      datetime.now(UTC).isoformat(), {"n": i})
        producer.produce(topic, webhooks_v1.encode_message(message), key=tenant.encode())
        ids.append(message.id)
    assert producer.flush(10) == 0
    return ids


def _endpoint(stack: Stack, tenant: str, url: str) -> tuple[str, str]:
    with stack.client() as admin:
        made = admin.post(f"/v1/admin/tenants/{tenant}/webhooks", json={"url": url})
        assert made.status_code == 201, made.text
        return made.json()["id"], made.json()["secret"]


def test_dispatcher_killed_before_its_commit_repeats_and_loses_nothing(
        settings: Settings, stack: Stack) -> None:
    """Attacks step 6 of the dispatcher's protocol (processors/webhooks/dispatcher.py): the
    ``webhook-dispatcher.before-commit`` failpoint kills it mid-stream, after deliveries
    were attempted and logged (2 to 5) and before their offsets were committed (6). The
    restarted dispatcher must deliver those again (at least once: the receiver sees repeats,
    each the same message under the same ``webhook-id``) and lose none."""
    receiver = Receiver()
    try:
        receiver.start()
        tenant, _key = stack.new_tenant("Crash Receiver")
        _endpoint_id, secret = _endpoint(stack, tenant, receiver.url)
        dispatcher = next(w for w in stack.workers if w.name == "webhook-dispatcher")
        since = dispatcher.log.stat().st_size
        # Armed for one launch: its first commit of finished deliveries (about a second
        # after they began; it delivers a few thousand a second) kills it.
        dispatcher.arm("webhook-dispatcher.before-commit@1")
        dispatcher.kill()
        dispatcher.start()
        ids = _messages(settings, stack, tenant, 8000)
        _until("the failpoint", lambda: "failpoint webhook-dispatcher.before-commit reached"
               in dispatcher.log.read_bytes()[since:].decode(errors="replace") or None)
        seen_at_kill = len(receiver.ids())
        assert 0 < seen_at_kill < len(ids), seen_at_kill  # mid-stream
        _until("the watchdog's restart", lambda: (dispatcher.restarts >= 1
                                                  and dispatcher.alive()) or None, timeout=30)
        _until("every message", lambda: set(ids) <= receiver.ids() or None, timeout=180)
        assert receiver.ids() == set(ids)  # nothing else arrived
        verifier = Webhook(secret)
        bodies: dict[str, bytes] = {}
        for got in receiver.received:
            verifier.verify(got.body, got.headers)
            wid = got.headers["webhook-id"]
            assert bodies.setdefault(wid, got.body) == got.body, wid  # a repeat is the same
        repeats = len(receiver.received) - len(receiver.ids())
        # The deliveries finished since the last commit were sent again after the restart.
        assert repeats >= 1, "nothing was repeated: the kill did not land before a commit"
        assert dispatcher.restarts == 1
    finally:
        receiver.close()


def test_endpoint_failing_for_long_is_disabled_and_shown(settings: Settings,
                                                         stack: Stack) -> None:
    receiver = Receiver()  # never started: every attempt is refused
    try:
        tenant, _key = stack.new_tenant("Gone Away")
        endpoint, _secret = _endpoint(stack, tenant, receiver.url)
        ids = _messages(settings, stack, tenant, 3)
        with stack.client() as admin:
            shown = _until("the endpoint disabled", lambda: (
                body if not (body := admin.get(
                    f"/v1/admin/tenants/{tenant}/webhooks/{endpoint}").json())["enabled"]
                else None), timeout=60)
            assert shown["disabled_reason"].startswith("every attempt failed since")
            assert shown["failing_since"] is not None
            # Deliveries for a disabled endpoint are kept in the dead-letter topic.
            def all_dead() -> list[dict[str, Any]] | None:
                found = [d for d in admin.get("/v1/admin/webhooks/dead-letter").json()
                         if d["endpoint_id"] == endpoint]
                return found if {d["message_id"] for d in found} == set(ids) else None

            dead = _until("all three dead-lettered", all_dead)
            assert {d["last_error"] for d in dead} & {"endpoint disabled"}
            # Enabling it again clears the reason; a replay then delivers.
            receiver.start()
            enabled = admin.patch(f"/v1/admin/tenants/{tenant}/webhooks/{endpoint}",
                                  json={"enabled": True})
            assert enabled.status_code == 200, enabled.text
            assert enabled.json()["disabled_reason"] is None
            # The dispatcher learns of the enable through the admin topic; a replay it
            # reads before that is dead-lettered again ("endpoint disabled"), so replay
            # until the receiver has them; the first replay sends exactly the three.
            replays: list[int] = []

            def replayed() -> bool:
                replay = admin.post("/v1/admin/webhooks/dead-letter/replay",
                                    json={"endpoint_id": endpoint})
                assert replay.status_code == 202, replay.text
                replays.append(replay.json()["replayed"])
                assert replays[0] == 3, replays
                assert replays[-1] >= 3, replays
                return wait_until_or_false(lambda: receiver.ids() >= set(ids), 5)

            _until("the replayed deliveries", lambda: replayed() or None, timeout=60)
    finally:
        receiver.close()

"""Signatures as receivers check them: by the Standard Webhooks reference library, not by us."""

from __future__ import annotations

import base64
import re
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from processors.webhooks.core.signing import new_secret, sign_headers, signature

MSG_ID = "msg_2ZkqGJ8vQfGJ3Sgk"
BODY = b'{"type":"invoice.finalized","timestamp":"2026-12-01T01:00:02Z","data":{"id":"inv_1"}}'


def now() -> int:
    return int(time.time())


def test_a_secret_is_whsec_and_base64_of_at_least_24_random_bytes() -> None:
    secret = new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    assert new_secret() != secret


def test_the_headers_carry_id_timestamp_signature_and_content_type() -> None:
    timestamp = now()
    headers = sign_headers([new_secret()], MSG_ID, timestamp, BODY)
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == str(timestamp)
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    assert headers["content-type"] == "application/json"


def test_a_valid_signature_verifies() -> None:
    secret = new_secret()
    headers = sign_headers([secret], MSG_ID, now(), BODY)
    assert Webhook(secret).verify(BODY, headers)["data"] == {"id": "inv_1"}


def test_signature_matches_the_header_and_the_reference_signer() -> None:
    secret = new_secret()
    timestamp = now()
    ours = signature(secret, MSG_ID, timestamp, BODY)
    assert sign_headers([secret], MSG_ID, timestamp, BODY)["webhook-signature"] == ours
    Webhook(secret).verify(BODY, {"webhook-id": MSG_ID, "webhook-timestamp": str(timestamp),
                                  "webhook-signature": ours})


def test_during_a_rotation_a_receiver_holding_either_secret_accepts() -> None:
    old, new = new_secret(), new_secret()
    headers = sign_headers([old, new], MSG_ID, now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_a_tampered_body_is_rejected() -> None:
    secret = new_secret()
    headers = sign_headers([secret], MSG_ID, now(), BODY)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(BODY.replace(b"inv_1", b"inv_2"), headers)


def test_a_changed_id_is_rejected() -> None:
    secret = new_secret()
    headers = sign_headers([secret], MSG_ID, now(), BODY)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_other"})


def test_a_wrong_secret_is_rejected() -> None:
    headers = sign_headers([new_secret()], MSG_ID, now(), BODY)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(("offset", "reason"), [(-600, "too old"), (600, "too new")])
def test_a_timestamp_outside_the_tolerance_is_rejected(offset: int, reason: str) -> None:
    # The reference library tolerates five minutes either way.
    secret = new_secret()
    headers = sign_headers([secret], MSG_ID, now() + offset, BODY)
    with pytest.raises(WebhookVerificationError, match=reason):
        Webhook(secret).verify(BODY, headers)


def test_a_secret_without_padding_signs_like_the_reference_library_reads_it() -> None:
    unpadded = "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("=")
    headers = sign_headers([unpadded], MSG_ID, now(), BODY)
    Webhook(unpadded).verify(BODY, headers)


@pytest.mark.parametrize("secret", ["c2VjcmV0", "whsec_", "whsec_not base64!"])
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        signature(secret, MSG_ID, now(), BODY)


def test_signing_needs_a_secret_and_an_id() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_headers([], MSG_ID, now(), BODY)
    with pytest.raises(ValueError, match="id"):
        sign_headers([new_secret()], "", now(), BODY)


def test_signing_keeps_up_with_thousands_of_deliveries_a_second() -> None:
    rotation = [new_secret(), new_secret()]
    count = 5_000
    started = time.perf_counter()
    for n in range(count):
        sign_headers(rotation, f"msg_{n}", 1_800_000_000, BODY)
    # Generous: a shared CI machine, and two signatures per delivery.
    assert time.perf_counter() - started < 1.0

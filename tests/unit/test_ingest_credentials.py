"""Which tenant an ingest record may count for (processors.usage.core.ingest_credentials):
the key it presents, and the attestation its dead letter carries instead of that key."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from processors.tenants.core import keys
from processors.usage.core import ingest_credentials as ic
from schemas.admin_v1 import ApiKey

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RAW = "mtr_" + "a" * 43
RECORD_KEY = ("records-1", b"s" * 32)
RECORD_KEYS = dict([RECORD_KEY])
KEY = ApiKey("key_1", "ten_a", "ingest-orders", RAW[:12], keys.key_hash(RAW),
             "2026-11-01T00:00:00.000Z", scope="ingest")
HEADERS = [("content-type", b"application/cloudevents+json"), ("ce_id", b"e-1")]
VALUE = b'{"specversion": "1.0"}'


def test_a_raw_key_is_presented_and_judged_against_the_record_key() -> None:
    found = ic.presented([*HEADERS, (ic.KEY_HEADER, RAW.encode())], "ten_a", VALUE,
                         RECORD_KEYS)
    assert found == ic.Presented(raw_key=RAW)
    assert ic.refusal(KEY, "ten_a", NOW) is None
    assert "another tenant" in (ic.refusal(KEY, "ten_b", NOW) or "")
    assert "no API key" in (ic.refusal(None, "ten_a", NOW) or "")
    assert ic.presented(HEADERS, "ten_a", VALUE, RECORD_KEYS) == ic.MISSING


def test_a_dead_letter_keeps_an_attestation_never_the_key() -> None:
    sent = [*HEADERS, (ic.KEY_HEADER, RAW.encode())]
    kept = ic.dead_letter_headers(sent, KEY, "ten_a", VALUE, RECORD_KEY)
    assert all(k != ic.KEY_HEADER for k, _ in kept)
    assert RAW.encode() not in b"".join(v or b"" for _k, v in kept)  # type: ignore[misc]
    # Replayed as kept (plus Meterly's own headers), it presents the same key by id.
    replayed = [*kept, ("meterly-replayed-from", b"dl/0/7")]
    assert ic.presented(replayed, "ten_a", VALUE, RECORD_KEYS) == ic.Presented(
        attested_key_id="key_1")


def test_an_unverified_key_leaves_only_its_prefix() -> None:
    wrong = "mtr_" + "w" * 43
    kept = ic.dead_letter_headers([*HEADERS, (ic.KEY_HEADER, wrong.encode())], None, "ten_a",
                                  VALUE, RECORD_KEY)
    assert dict(kept)[ic.PREFIX_HEADER] == wrong[:12].encode()
    assert ic.ATTESTED_HEADER not in dict(kept)
    assert ic.presented(kept, "ten_a", VALUE, RECORD_KEYS) == ic.MISSING


@given(tenant=st.sampled_from(["ten_a", "ten_b"]), value=st.sampled_from([VALUE, b"{}"]),
       extra=st.sampled_from([[], [("ce_type", b"other")]]),
       secret=st.sampled_from([b"s" * 32, b"t" * 32]))
def test_an_attestation_opens_only_for_what_it_was_made_for(
        tenant: str, value: bytes, extra: list[tuple[str, bytes]], secret: bytes) -> None:
    kept = ic.dead_letter_headers([*HEADERS, (ic.KEY_HEADER, RAW.encode())], KEY, "ten_a",
                                  VALUE, RECORD_KEY)
    found = ic.presented([*kept, *extra], tenant, value, {"records-1": secret})
    same = tenant == "ten_a" and value == VALUE and not extra and secret == b"s" * 32
    assert (found == ic.Presented(attested_key_id="key_1")) is same
    if not same:
        assert isinstance(found, str)


def test_a_forged_or_unknown_attestation_is_refused() -> None:
    assert "malformed" in str(ic.presented([(ic.ATTESTED_HEADER, b"x")], "ten_a", VALUE,
                                           RECORD_KEYS))
    assert "does not hold" in str(ic.presented(
        [(ic.ATTESTED_HEADER, b"records-9.key_1.00")], "ten_a", VALUE, RECORD_KEYS))
    assert "does not match" in str(ic.presented(
        [(ic.ATTESTED_HEADER, b"records-1.key_1." + b"0" * 64)], "ten_a", VALUE,
        RECORD_KEYS))


def test_an_ingest_key_may_only_send_usage() -> None:
    assert keys.scope_refusal(KEY, "POST", "/v1/events") is None
    assert "ingest key" in (keys.scope_refusal(KEY, "GET", "/v1/usage") or "")
    assert "ingest key" in (keys.scope_refusal(KEY, "GET", "/v1/invoices") or "")
    full = ApiKey("key_2", "ten_a", "default", RAW[:12], keys.key_hash(RAW),
                  "2026-11-01T00:00:00.000Z")
    assert keys.scope_refusal(full, "GET", "/v1/usage") is None

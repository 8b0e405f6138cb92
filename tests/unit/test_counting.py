"""The counting rule and the changelog format, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from hashlib import blake2b

import pytest

from processors.usage.core.counting import Counter, Fold, apply, identity_hash
from processors.usage.core.periods import (
    day_number,
    dedupe_expiry_day,
    open_periods,
    period_bounds,
    period_of,
    rejection_for_time,
)
from schemas import counter_changelog_v1 as changelog
from schemas import usage_v1
from schemas.usage_v1 import UsageEvent, UsageRecord

T = int(datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp() * 1000)


def _event(i: str, q: str = "1", meter: str = "m", source: str = "s") -> UsageEvent:
    return UsageEvent(i, source, meter, T, Decimal(q))


def test_each_identity_counts_once_within_and_across_records() -> None:
    known: set[bytes] = set()
    fold = Fold()
    fold.add(UsageRecord("t1", (_event("a", "0.1"), _event("a", "0.1"), _event("b", "0.2"))),
             lambda hs: [h in known for h in hs])
    known.update(h for h, _ in fold.new_ids)
    later = Fold()
    later.add(UsageRecord("t1", (_event("a", "0.1"), _event("c", "5"))),
              lambda hs: [h in known for h in hs])
    assert (fold.counted, fold.duplicates, later.counted, later.duplicates) == (2, 1, 1, 1)
    counters: dict[tuple[str, str, str], Counter] = {}
    apply(counters, fold)
    changed = apply(counters, later)
    assert changed == {("t1", "2026-11", "m"): Counter(3, Decimal("5.3"))}


def test_identity_is_tenant_source_and_id() -> None:
    assert identity_hash("t1", "s", "a") != identity_hash("t2", "s", "a")
    assert identity_hash("t1", "s", "a") != identity_hash("t1", "s2", "a")
    assert len(identity_hash("t", "s", "i")) == 16


def test_usage_record_round_trip_keeps_exact_decimals() -> None:
    record = UsageRecord("t", (UsageEvent("i", "s", "m", T, Decimal("0.1"), "sub"),))
    assert usage_v1.decode(usage_v1.encode(record)) == record


def test_changelog_values_round_trip_and_seen_keys_are_unique_per_chunk() -> None:
    key = ("t", "2026-11", "m")
    ckey, count, total = changelog.parse_counter(changelog.counter_key(key),
                                                 changelog.counter_value(7, Decimal("1.50")))
    assert (ckey, count, total) == (key, 7, Decimal("1.50"))
    entries = [(identity_hash("t", "s", str(i)), 20_000 + i) for i in range(3)]
    assert list(changelog.parse_seen(changelog.seen_value(entries))) == entries
    assert changelog.seen_key(5, 0) != changelog.seen_key(5, 1) != changelog.seen_key(6, 0)


def test_periods_are_utc_months_with_grace() -> None:
    assert period_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"
    start, end = period_bounds("2026-12")
    assert (start.month, end.year, end.month) == (12, 2027, 1)
    early_jan = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    assert open_periods(early_jan) == ("2026-12", "2027-01")
    assert open_periods(datetime(2027, 1, 1, 2, 0, tzinfo=UTC)) == ("2027-01",)
    assert rejection_for_time(datetime(2026, 12, 31, 23, tzinfo=UTC), early_jan) is None
    late = rejection_for_time(datetime(2026, 12, 31, 23, tzinfo=UTC),
                              datetime(2027, 1, 1, 1, 1, tzinfo=UTC))
    assert late is not None
    assert "closed" in late


def test_ids_are_remembered_at_least_35_days_and_past_the_period() -> None:
    moment = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert dedupe_expiry_day(T) - day_number(moment) >= 35
    first_of_month = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    assert dedupe_expiry_day(first_of_month) > day_number(datetime(2026, 12, 1, tzinfo=UTC))


def test_identities_with_a_nul_are_not_ambiguous_and_the_rest_keep_their_hash() -> None:
    # Source "a\0b" with id "c" against source "a" with id "b\0c": one string when joined.
    assert identity_hash("t", "a\0b", "c") != identity_hash("t", "a", "b\0c")
    assert identity_hash("t\0a", "b", "c") != identity_hash("t", "a\0b", "c")
    # Identities without a NUL hash as they always did (remembered ids stay valid).
    assert identity_hash("ten_1", "orders", "e-1") == blake2b(
        b"ten_1\0orders\0e-1", digest_size=16).digest()


@pytest.mark.parametrize("grace", [timedelta(0), timedelta(hours=1), timedelta(days=6),
                                   timedelta(days=7), timedelta(days=10), timedelta(days=40)])
def test_an_identity_is_kept_until_its_event_time_is_refused_for_any_grace(
        grace: timedelta) -> None:
    """exactly-once.md P4: with grace >= 7 days the identity of an event at the start of a
    31-day month was forgotten while its time was still accepted. The first moment it can
    be forgotten (the start of the day after its expiry day) must refuse a resend."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for month in range(48):
        first = datetime(2026 + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        for moment in (first, first + timedelta(days=14, hours=7), period_bounds(
                period_of(first))[1] - timedelta(milliseconds=1)):
            ms = int(moment.timestamp() * 1000)
            fold = Fold(grace=grace)
            fold.add(UsageRecord("t", (UsageEvent("x", "s", "m", ms, Decimal(1)),)),
                     lambda hashes: [False] * len(hashes))
            (_h, expiry), = fold.new_ids
            forgotten_from = start + timedelta(days=expiry + 1 - day_number(start))
            assert rejection_for_time(moment, forgotten_from, grace) is not None, (
                moment, grace)


def test_totals_are_summed_exactly_beyond_28_digits() -> None:
    """exactly-once.md P13: the default context rounded totals past 28 digits."""
    big = Decimal("999999999999999999999999000")  # 10^12 events of 999999999999999.999999999
    counters: dict[tuple[str, str, str], Counter] = {
        ("t", "2026-11", "m"): Counter(10**12, big)}
    fold = Fold()
    fold.add(UsageRecord("t", (UsageEvent("y", "s", "m", T, Decimal("0.000000001")),)),
             lambda hashes: [False] * len(hashes))
    changed = apply(counters, fold)
    assert str(changed[("t", "2026-11", "m")].total) == (
        "999999999999999999999999000.000000001")  # 36 digits

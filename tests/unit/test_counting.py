"""The counting rule and the changelog format, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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

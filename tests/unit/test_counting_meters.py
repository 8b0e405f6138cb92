"""The counting fold for defined meters (processors.usage.core.counting): contributions
fold into their groups, an event counts once whatever its deliveries, a unique_count value
once whatever the events that carry it, across batches through the remembered members; and
the partition store keeps groups across a restart and a changelog restore."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from processors.usage.core.aggregations import GroupState
from processors.usage.core.counting import Fold, apply_groups, member_hash
from processors.usage.partition_store import PartitionStore, group_value
from schemas import counter_changelog_v1 as changelog
from schemas.usage_v1 import MeterContribution, UsageEvent, UsageRecord

T = 1796119200000  # 2026-12-01T...
PERIOD = "2026-12"
LARGE_IN = (("model", "large"), ("token_type", "input"))


def _llm(event_id: str, tokens: int, user: str, time_ms: int = T) -> UsageEvent:
    return UsageEvent(event_id, "gw", "llm.tokens", time_ms, Decimal(1), None, None, (
        MeterContribution("llm_tokens", 1, "sum", LARGE_IN, str(tokens)),
        MeterContribution("users", 1, "unique_count", (), f'"{user}"'),
        MeterContribution("peak", 1, "max", (), str(tokens)),
        MeterContribution("last", 1, "latest", (), str(tokens))))


def _nothing_known(hashes: list[bytes]) -> list[bool]:
    return [False] * len(hashes)


def test_contributions_fold_into_groups_and_duplicates_add_nothing() -> None:
    fold = Fold()
    fold.add(UsageRecord("ten", (_llm("a", 400, "u1"), _llm("b", 100, "u2", T + 5),
                                 _llm("a", 400, "u1"), _llm("c", 50, "u1", T + 1))),
             _nothing_known)
    assert fold.counted == 3
    assert fold.duplicates == 1
    groups = {k[2]: v for k, v in fold.groups.items()}
    assert groups["llm_tokens"][1].value("sum") == 550
    assert groups["users"][1].value("unique_count") == 2
    assert groups["peak"][1].value("max") == 400
    assert groups["last"][1].value("latest") == 100  # the latest event time wins
    # The type's own counter goes on as before meters (what plans price by type).
    assert [(c.count, c.total) for c in fold.increments.values()] == [(3, 3)]
    members = {member_hash("ten", "users", PERIOD, (), '"u1"'),
               member_hash("ten", "users", PERIOD, (), '"u2"')}
    assert members <= {h for h, _day in fold.new_ids}


def test_a_unique_value_remembered_from_an_earlier_batch_counts_no_more() -> None:
    first = Fold()
    first.add(UsageRecord("ten", (_llm("a", 1, "u1"),)), _nothing_known)
    remembered = {h for h, _day in first.new_ids}
    stored = apply_groups({}, first)
    second = Fold()
    second.add(UsageRecord("ten", (_llm("b", 1, "u1"), _llm("c", 1, "u3"))),
               lambda hashes: [h in remembered for h in hashes])
    changed = apply_groups(dict(stored), second)
    users = next(v for k, v in changed.items() if k[2] == "users")
    assert users[1].value("unique_count") == 2  # u1 once, u3
    assert users[1].count == 3  # three events carried a value


def test_the_store_keeps_groups_across_a_reopen_and_a_restore(tmp_path: Path) -> None:
    key = ("ten", PERIOD, "llm_tokens", LARGE_IN)
    group = ("sum", GroupState(2, Decimal("550"), None, None, 0))
    store = PartitionStore(tmp_path / "a")
    store.committed({}, [], 10, groups={key: group})
    store.close()
    reopened = PartitionStore(tmp_path / "a")
    assert reopened.groups == {key: group}
    reopened.close()
    restored = PartitionStore(tmp_path / "b")
    restored.restore(changelog.group_key(key), changelog.group_value(group_value(group)), 7)
    restored.flush_restore(8)
    assert restored.groups == {key: group}
    restored.close()

"""The gateway's idempotent answers (gateway/recent.py ``TenantResponses``): bounded in bytes
per tenant and in all, one tenant's flood evicting only its own answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.recent import TenantResponses

OVER = TenantResponses.OVERHEAD


def cache(per_tenant: int = 10_000, total: int = 25_000) -> TenantResponses[bytes | None]:
    return TenantResponses(per_tenant, total, lambda b: len(b) if b is not None else 0)


def test_an_answer_is_kept_by_tenant_and_key() -> None:
    c = cache()
    c.put(("a", "k1"), b"x" * 100)
    assert ("a", "k1") in c
    assert c.get(("a", "k1")) == b"x" * 100
    assert ("b", "k1") not in c
    assert c.get(("b", "k1")) is None
    assert c.bytes == c.tenant_bytes("a") == 100 + 2 + OVER


def test_a_tenant_over_its_budget_loses_its_own_oldest_answers_only() -> None:
    c = cache()
    c.put(("quiet", "q"), b"q" * 1000)
    for i in range(100):
        c.put(("noisy", f"k{i:03}"), b"n" * 2000)
    assert c.get(("quiet", "q")) == b"q" * 1000
    assert c.tenant_bytes("noisy") <= 10_000
    kept = [i for i in range(100) if ("noisy", f"k{i:03}") in c]
    assert kept == list(range(100 - len(kept), 100))
    assert len(kept) == 10_000 // (2004 + OVER)


def test_all_tenants_together_stay_within_the_total_oldest_first() -> None:
    c = cache()
    for t in range(10):
        c.put((f"t{t}", "k"), b"z" * 5000)
    assert c.bytes <= 25_000
    present = [t for t in range(10) if (f"t{t}", "k") in c]
    assert present == list(range(10 - len(present), 10))
    assert len(present) == 4


def test_an_answer_larger_than_a_tenant_budget_is_not_kept() -> None:
    c = cache()
    c.put(("a", "big"), b"b" * 20_000)
    assert ("a", "big") not in c
    assert c.bytes == 0


def test_in_progress_marker_is_replaced_by_the_answer_and_pop_frees_it() -> None:
    c = cache()
    c.put(("a", "k"), None)
    assert ("a", "k") in c
    assert c.get(("a", "k")) is None
    c.put(("a", "k"), b"r" * 10)
    assert c.bytes == 10 + 1 + OVER
    assert len(c) == 1
    c.pop(("a", "k"))
    c.pop(("a", "k"))
    assert c.bytes == 0
    assert len(c) == 0
    assert c.tenant_bytes("a") == 0


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20),
                          st.integers(-1, 4000)), max_size=200))
def test_any_sequence_keeps_the_books_and_the_bounds(ops: list[tuple[str, int, int]]) -> None:
    c = cache(per_tenant=6000, total=9000)
    for tenant, key, size in ops:
        if size < 0:
            c.pop((tenant, str(key)))
        else:
            c.put((tenant, str(key)), b"v" * size)
        assert c.bytes <= 9000
        assert all(c.tenant_bytes(t) <= 6000 for t in "abc")
        assert c.bytes == sum(c.tenant_bytes(t) for t in "abc")
    if ops and ops[-1][2] >= 0 and ops[-1][2] + OVER + 2 <= 6000:
        tenant, key, size = ops[-1]
        assert c.get((tenant, str(key))) == b"v" * size  # the newest answer is always kept

"""Bounded memory of recent things: accepted event identities and idempotent responses."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A least-recently-inserted map holding at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class TenantResponses(Generic[V]):
    """Idempotent responses by (tenant, key), bounded in bytes per tenant and in all.

    One tenant's requests evict only that tenant's oldest answers once it holds
    ``per_tenant`` bytes; all tenants together hold at most ``total`` bytes, the oldest
    answers of any tenant going first. An answer larger than ``per_tenant`` is not kept
    (a retry then runs again, and its events, keeping their ids, count once). ``size_of``
    gives an entry's bytes; each entry is charged ``OVERHEAD`` more for its key and slot.
    """

    OVERHEAD = 256

    def __init__(self, per_tenant: int, total: int, size_of: Callable[[V], int]) -> None:
        self.per_tenant, self.total = per_tenant, total
        self._size_of = size_of
        self._tenants: dict[str, OrderedDict[str, tuple[V, int]]] = {}
        self._used: dict[str, int] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.bytes = 0

    def __contains__(self, slot: object) -> bool:
        if not isinstance(slot, tuple) or len(slot) != 2:
            return False
        tenant, key = slot
        entries = self._tenants.get(tenant)
        return entries is not None and key in entries

    def get(self, slot: tuple[str, str]) -> V | None:
        tenant, key = slot
        entries = self._tenants.get(tenant)
        entry = None if entries is None else entries.get(key)
        return None if entry is None else entry[0]

    def put(self, slot: tuple[str, str], value: V) -> None:
        tenant, key = slot
        self.pop(slot)
        size = self._size_of(value) + len(key) + self.OVERHEAD
        if size > self.per_tenant:
            return
        self._tenants.setdefault(tenant, OrderedDict())[key] = (value, size)
        self._used[tenant] = self._used.get(tenant, 0) + size
        self._order[slot] = None
        self.bytes += size
        entries = self._tenants[tenant]
        while self._used[tenant] > self.per_tenant:
            self.pop((tenant, next(iter(entries))))
        while self.bytes > self.total:
            self.pop(next(iter(self._order)))

    def pop(self, slot: tuple[str, str]) -> None:
        tenant, key = slot
        entries = self._tenants.get(tenant)
        if entries is None or key not in entries:
            return
        _value, size = entries.pop(key)
        del self._order[slot]
        self.bytes -= size
        self._used[tenant] -= size
        if not entries:
            del self._tenants[tenant], self._used[tenant]

    def tenant_bytes(self, tenant: str) -> int:
        return self._used.get(tenant, 0)

    def __len__(self) -> int:
        return len(self._order)

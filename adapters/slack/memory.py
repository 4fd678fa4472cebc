"""Small in-process TTL maps: threads the bot follows and Slack events already handled.

Both are per-process for now; the cross-replica record (SQL) comes with the scale-out issue, so
with several replicas a thread followed on one replica is unknown to the others until then.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlMap(Generic[K, V]):
    """A bounded map whose entries expire ``ttl`` seconds after they were last set."""

    def __init__(
        self, ttl: float, *, max_size: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._items[key]
            return None
        return value

    def set(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl, value)
        self._evict()

    def add_new(self, key: K, value: V) -> bool:
        """Set ``key`` unless it is already there; True when it was new (dedup)."""
        if self.get(key) is not None:
            return False
        self.set(key, value)
        return True

    def _evict(self) -> None:
        now = self._clock()
        # Oldest first: expired heads go, and the map never outgrows max_size.
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now and len(self._items) <= self._max_size:
                break
            del self._items[key]

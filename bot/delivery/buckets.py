"""Token buckets in this process's memory: ``bot.stores.Budgets`` for one process (SQLite).

Replicas share the SQL implementation (``storage/budgets.py``); both follow the same arithmetic,
``refill``, so a bucket behaves alike wherever it is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
FORGET_AFTER = 3600.0  # seconds a bucket may stay untouched before it is dropped (it is full)


@dataclass(slots=True)
class Bucket:
    tokens: float
    stamp: float  # when ``tokens`` was counted
    blocked_until: float = 0.0


def refill(tokens: float, *, elapsed: float, rate: float, burst: float) -> float:
    return min(burst, tokens + max(elapsed, 0.0) * rate)


def wait_for(tokens: float, *, rate: float, keep: float, blocked: float) -> float:
    """Seconds until a bucket holding ``tokens`` has ``keep`` + 1 (and is no longer blocked)."""
    missing = keep + 1.0 - tokens
    refilling = missing / rate if missing > 0 and rate > 0 else 0.0
    return max(blocked, refilling, 0.001 if missing > 0 else 0.0)


class MemoryBudgets:
    """Implements ``bot.stores.Budgets`` in memory: exact for one process, nothing shared."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._takes = 0

    async def take(self, key: str, *, rate: float, burst: float, keep: float = 0.0) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(burst, now)
            self._forget_idle(now)
        bucket.tokens = refill(bucket.tokens, elapsed=now - bucket.stamp, rate=rate, burst=burst)
        bucket.stamp = max(bucket.stamp, now)
        blocked = bucket.blocked_until - now
        if blocked <= 0 and bucket.tokens >= keep + 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return wait_for(bucket.tokens, rate=rate, keep=keep, blocked=blocked)

    async def block(self, key: str, *, seconds: float) -> None:
        now = self._clock()
        bucket = self._buckets.setdefault(key, Bucket(0.0, now))
        bucket.tokens, bucket.stamp = 0.0, now
        bucket.blocked_until = max(bucket.blocked_until, now + seconds)

    def _forget_idle(self, now: float) -> None:
        self._takes += 1
        if self._takes % 1000 == 0:  # per-channel buckets come and go: drop the idle ones
            idle = [k for k, b in self._buckets.items() if b.stamp < now - FORGET_AFTER]
            for key in idle:
                del self._buckets[key]

"""Telegram's flood limits for the fake Bot API, answered the way the Bot API answers them.

The documented limits (Bots FAQ, "My bot is hitting limits"): inside one chat about one message
per second, short bursts allowed; no more than 20 messages per minute to the same group; about
30 messages per second across chats. Edits count like messages here (the issue's "one message or
edit per second per chat"). Drafts (sendMessageDraft) have their own undocumented per-chat limit;
bots streaming a draft every 300 ms were seen getting 429 with retry_after=3, so drafts get a
bucket of their own, by default as strict as messages.

A refused call does not count. ``retry_after`` is whole seconds, at least 1: the time until the
call would be accepted (Telegram's own values are often larger, never smaller).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FloodLimits:
    chat_rate: float = 1.0  # messages (and edits) per second, steady, per chat
    chat_burst: int = 3  # how many may go at once before the rate applies
    group_per_minute: int = 20  # per group or supergroup, rolling minute
    global_per_second: int = 30  # across all chats
    draft_rate: float = 1.0  # sendMessageDraft calls per second per chat
    draft_burst: int = 3

    @classmethod
    def off(cls) -> FloodLimits:
        """No limits at all (benchmarks of other things, payload tests)."""
        huge = 1_000_000
        return cls(huge, huge, huge, huge, huge, huge)


@dataclass
class _Bucket:
    tokens: float
    at: float


class FloodControl:
    def __init__(self, limits: FloodLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, int], _Bucket] = {}
        self._group_windows: defaultdict[int, deque[float]] = defaultdict(deque)
        self._global: deque[float] = deque()

    def message(self, chat_id: int, *, is_group: bool) -> int | None:
        """Count one message or edit into ``chat_id``: None if allowed, else retry_after."""
        now = self._clock()
        limits = self.limits
        waits = [
            self._bucket_wait(("message", chat_id), limits.chat_rate, limits.chat_burst, now),
            _window_wait(self._global, 1.0, limits.global_per_second, now),
        ]
        if is_group:
            waits.append(
                _window_wait(self._group_windows[chat_id], 60.0, limits.group_per_minute, now)
            )
        wait = max(waits)
        if wait > 0:
            return max(1, math.ceil(wait))
        self._take(("message", chat_id), now)
        self._global.append(now)
        if is_group:
            self._group_windows[chat_id].append(now)
        return None

    def draft(self, chat_id: int) -> int | None:
        now = self._clock()
        limits = self.limits
        wait = self._bucket_wait(("draft", chat_id), limits.draft_rate, limits.draft_burst, now)
        if wait > 0:
            return max(1, math.ceil(wait))
        self._take(("draft", chat_id), now)
        return None

    def _bucket_wait(self, key: tuple[str, int], rate: float, burst: int, now: float) -> float:
        bucket = self._buckets.setdefault(key, _Bucket(float(burst), now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / rate

    def _take(self, key: tuple[str, int], now: float) -> None:
        self._buckets[key].tokens -= 1.0


def _window_wait(window: deque[float], span: float, limit: int, now: float) -> float:
    while window and window[0] <= now - span:
        window.popleft()
    if len(window) < limit:
        return 0.0
    return window[len(window) - limit] + span - now

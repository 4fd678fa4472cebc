"""The per-workspace ``chat.update`` budget: edits spaced under Slack's Tier 3, 429s honoured.

``chat.update`` is Tier 3 (50+/min) per workspace and app, shared by every reply being edited,
so the budget belongs to the workspace, not to one reply. Interim edits take a slot (waiting a
little for it, or skipping when the wait would be long); final edits always go and only charge.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class EditBudget:
    """Slots spaced ``60 / per_minute`` seconds apart, with a small burst (GCRA-style)."""

    def __init__(self, per_minute: int, *, burst: int = 3, clock: Clock = time.monotonic) -> None:
        self.spacing = 60.0 / max(per_minute, 1)
        self._burst = max(burst, 1)
        self._clock = clock
        self._next_free = 0.0
        self._blocked_until = 0.0

    def reserve(self, max_wait: float) -> float | None:
        """Take the next slot: the seconds to wait for it, or None (skip) if over ``max_wait``."""
        now = self._clock()
        if self._blocked_until > now:
            return None
        start = max(self._next_free, now - (self._burst - 1) * self.spacing)
        wait = max(0.0, start - now)
        if wait > max_wait:
            return None
        self._next_free = start + self.spacing
        return wait

    def charge(self) -> None:
        """A final edit went out regardless of the budget: later interim edits make room."""
        now = self._clock()
        self._next_free = max(self._next_free, now - (self._burst - 1) * self.spacing)
        self._next_free += self.spacing

    def block(self, retry_after: float) -> None:
        """Slack answered 429: no edit in this workspace before ``Retry-After`` has passed."""
        self._blocked_until = max(self._blocked_until, self._clock() + retry_after)

    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - self._clock())


class Budgets:
    """One ``EditBudget`` per workspace (team id), created on first use."""

    def __init__(self, per_minute: int, *, clock: Clock = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._budgets: dict[str, EditBudget] = {}

    def for_team(self, team: str) -> EditBudget:
        budget = self._budgets.get(team)
        if budget is None:
            budget = self._budgets[team] = EditBudget(self._per_minute, clock=self._clock)
        return budget

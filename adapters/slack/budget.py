"""Per-workspace budgets for Slack's rate-limited methods: no call that Slack would refuse.

Slack counts each Web API method per workspace and app over a rolling minute (reference slack.md
§1): ``chat.update`` and ``chat.delete`` Tier 3 (50+/min), ``chat.startStream`` and
``chat.stopStream`` Tier 2 (20+/min), ``chat.appendStream`` Tier 4 (100+/min), and per channel
``chat.postMessage`` (~1/s) and ``assistant.threads.setStatus`` (60/min). Every reply of a
workspace draws on the same windows, so they belong to the workspace, not to one reply:

- a final call (the answer itself) always goes: it waits for its slot, ahead of interim calls,
  for which a part of each window is kept (``FINAL_RESERVE``);
- an interim call (progress) never waits: it is skipped when the window is full, and replies
  take turns (``Shares``), so the one that waited longest is shown next;
- a native stream starts only when its ``chat.stopStream`` can be held for it, so every stream
  that starts can be finished in place; otherwise the reply edits a posted message instead;
- a 429 (another process of the same app spent the budget) pauses that method for Retry-After.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

Clock = Callable[[], float]
MINUTE = 60.0
FINAL_RESERVE = 0.2  # of a window, kept for final calls: interim calls use the rest
# Per minute, 90 % of each tier's floor: Slack's "50+" is a floor, and the margin absorbs clock
# skew between our window and Slack's. chat.update has its own setting (SLACK_UPDATE_BUDGET_...);
# SLACK_BUDGET_SCALE multiplies these (a workspace where Slack allows more; load benchmarks).
LIMITS = {
    "chat.startStream": 18,
    "chat.stopStream": 18,
    "chat.appendStream": 90,
    "chat.delete": 45,
    "chat.postMessage": 270,  # per workspace ("several hundred per minute")
}
CHANNEL_LIMITS = {"chat.postMessage": 54, "assistant.threads.setStatus": 54}
ACTIVE = 5.0  # seconds: a reply that asked for an interim call this recently is still competing
# Slack finalizes a stream server-side after ~5 minutes (slack.md §2): a stop slot held longer
# than this is no longer needed (and one held by a reply that was cancelled is given back).
STREAM_HOLD = 6 * MINUTE


class Window:
    """Calls of one method over the last minute, and slots held (promised) for later calls."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.limit = max(per_minute, 1)
        self._clock = clock
        self._calls: deque[float] = deque()
        self._held: deque[float] = deque()  # when each hold lapses, in order

    def free(self) -> int:
        now = self._clock()
        while self._calls and self._calls[0] <= now - MINUTE:
            self._calls.popleft()
        while self._held and self._held[0] <= now:
            self._held.popleft()
        return self.limit - len(self._calls) - len(self._held)

    def hold(self, lapse: float) -> None:
        self._held.append(self._clock() + lapse)

    def unhold(self) -> None:
        if self._held:
            self._held.popleft()

    def take(self) -> None:
        self._calls.append(self._clock())

    def wait(self, keep: int = 0) -> float:
        """Seconds until more than ``keep`` slots are free (0: now)."""
        missing = keep + 1 - self.free()
        if missing <= 0:
            return 0.0
        if missing > len(self._calls):
            return 1.0  # held slots must be given back first: look again soon
        return self._calls[missing - 1] + MINUTE - self._clock()


class Shares:
    """Interim calls of one window, taken in turns by the replies that want them."""

    def __init__(self, window: Window, clock: Clock) -> None:
        self.window = window
        self._clock = clock
        self._asked: dict[Hashable, float] = {}
        self._granted: dict[Hashable, float] = {}
        self._pruned = -math.inf

    def grant(self, reply: Hashable, *, keep: int) -> bool:
        now = self._clock()
        self._asked[reply] = now
        free = self.window.free()
        if free <= keep:
            return False
        # With room for every competing reply, no turns. Otherwise each gets one call per
        # turn, the window's spare slots per minute shared out; the others go first meanwhile.
        competing = self._competing(now)
        spare = max(self.window.limit - keep, 1)
        turn = MINUTE * competing / spare
        if free <= keep + competing and now - self._granted.get(reply, -math.inf) < turn:
            return False
        self._granted[reply] = now
        self.window.take()
        return True

    def forget(self, reply: Hashable) -> None:
        self._asked.pop(reply, None)
        self._granted.pop(reply, None)

    def _competing(self, now: float) -> int:
        if now - self._pruned >= 1.0:  # not on every call: that is every reply, every edit
            self._pruned = now
            for key in [key for key, at in self._asked.items() if at < now - ACTIVE]:
                self.forget(key)
        return max(len(self._asked), 1)


class WorkspaceBudget:
    """The windows of one workspace. Sync and clock-driven: callers sleep for the waits."""

    def __init__(
        self, update_per_minute: int, *, scale: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        self._clock = clock
        self._scale = scale
        self.windows = {method: Window(round(n * scale), clock) for method, n in LIMITS.items()}
        self.windows["chat.update"] = Window(update_per_minute, clock)
        self._channels: dict[tuple[str, str], Window] = {}
        self._interim = {
            method: Shares(self.windows[method], clock)
            for method in ("chat.update", "chat.appendStream")
        }
        self._blocked: dict[str, float] = {}

    # ---- interim calls: now or never --------------------------------------------------------

    def interim(self, method: str, reply: Hashable) -> bool:
        """May ``reply`` make an interim ``chat.update`` / ``chat.appendStream`` now?"""
        if self.blocked_for(method) > 0:
            return False
        keep = math.ceil(self.windows[method].limit * FINAL_RESERVE)
        return self._interim[method].grant(reply, keep=keep)

    def done(self, reply: Hashable) -> None:
        """The reply has ended: it no longer competes for interim calls."""
        for shares in self._interim.values():
            shares.forget(reply)

    # ---- calls that must go: wait, then call ---------------------------------------------------

    def wait(self, method: str, channel: str = "", *, take: bool = True) -> float:
        """Seconds to wait before calling ``method`` (in ``channel``); 0: the slot is taken
        (unless not ``take``: then only how long it would be)."""
        windows = [self.windows[method]] if method in self.windows else []
        if channel and method in CHANNEL_LIMITS:
            windows.append(self._channel(method, channel))
        wait = max([self.blocked_for(method), *(w.wait() for w in windows)])
        if wait <= 0 and take:
            for window in windows:
                window.take()
        return wait

    def try_now(self, method: str, channel: str) -> bool:
        """A best-effort call (``setStatus``): True if it may go now, else skip it."""
        return self.wait(method, channel) <= 0

    # ---- native streams ---------------------------------------------------------------------

    def open_stream(self) -> bool:
        """Start a stream now, holding the ``chat.stopStream`` that will finish it."""
        start, stop = self.windows["chat.startStream"], self.windows["chat.stopStream"]
        if max(self.blocked_for("chat.startStream"), start.wait(), stop.wait()) > 0:
            return False
        start.take()
        stop.hold(STREAM_HOLD)
        return True

    def end_stream(self, *, stopping: bool) -> None:
        """The stream's held ``chat.stopStream`` is being made now (``stopping``), or is not
        needed any more (Slack ended the stream, or it never started)."""
        stop = self.windows["chat.stopStream"]
        stop.unhold()
        if stopping:
            stop.take()

    # ---- 429s -------------------------------------------------------------------------------

    def block(self, method: str, retry_after: float) -> None:
        """Slack answered 429: no ``method`` call in this workspace before Retry-After."""
        until = self._clock() + retry_after
        self._blocked[method] = max(self._blocked.get(method, 0.0), until)

    def blocked_for(self, method: str) -> float:
        return max(0.0, self._blocked.get(method, 0.0) - self._clock())

    def _channel(self, method: str, channel: str) -> Window:
        window = self._channels.get((method, channel))
        if window is None:
            if len(self._channels) > 10_000:  # forget channels quiet for a minute
                self._channels = {k: w for k, w in self._channels.items() if w.free() < w.limit}
            limit = round(CHANNEL_LIMITS[method] * self._scale)
            window = self._channels[method, channel] = Window(limit, self._clock)
        return window


class Budgets:
    """One ``WorkspaceBudget`` per workspace (team id), created on first use."""

    def __init__(
        self, update_per_minute: int, *, scale: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        self._per_minute = update_per_minute
        self._scale = scale
        self._clock = clock
        self._budgets: dict[str, WorkspaceBudget] = {}

    def for_team(self, team: str) -> WorkspaceBudget:
        budget = self._budgets.get(team)
        if budget is None:
            budget = WorkspaceBudget(self._per_minute, scale=self._scale, clock=self._clock)
            self._budgets[team] = budget
        return budget

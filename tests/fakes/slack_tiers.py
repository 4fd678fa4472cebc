"""Slack's rate-limit tiers for the fake Web API: rolling-minute counts per method and workspace,
and per channel for the special tiers (reference slack.md §1.1)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping

# Per method, per workspace and app, per minute. "Tier 3 = 50+/min" etc.: the floor of each tier.
WORKSPACE_TIERS: Mapping[str, int] = {
    "chat.update": 50,  # Tier 3
    "chat.delete": 50,  # Tier 3
    "chat.startStream": 20,  # Tier 2
    "chat.appendStream": 100,  # Tier 4
    "chat.stopStream": 20,  # Tier 2
    "chat.postMessage": 300,  # the workspace-wide cap ("several hundred messages per minute")
}
# Special tiers, per channel: chat.postMessage ~1/s with short bursts; setStatus 60/min per DM.
CHANNEL_TIERS: Mapping[str, int] = {
    "chat.postMessage": 60,
    "assistant.threads.setStatus": 60,
}


class RateTiers:
    """``allow(method, channel)`` counts a call that Slack would accept; a refused call (429)
    does not count, like Slack's windows."""

    def __init__(
        self,
        workspace: Mapping[str, int] = WORKSPACE_TIERS,
        channel: Mapping[str, int] = CHANNEL_TIERS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workspace = dict(workspace)
        self.channel = dict(channel)
        self._clock = clock
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, method: str, channel: str = "") -> bool:
        now = self._clock()
        keys = []
        if method in self.workspace:
            keys.append((method, self.workspace[method]))
        if method in self.channel and channel:
            keys.append((f"{method}@{channel}", self.channel[method]))
        for key, limit in keys:
            window = self._windows[key]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= limit:
                return False
        for key, _ in keys:
            self._windows[key].append(now)
        return True

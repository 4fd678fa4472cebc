"""Who may ask (allowlists) and how often (a token bucket per user), decided on arrival."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.contract import Allowlist, Reply
from bot.models import IncomingMessage
from bot.ops.effort import best_effort
from bot.texts import Texts

log = logging.getLogger(__name__)


@dataclass
class RateLimiter:
    """A token bucket per Dify user: ``burst`` messages at once, refilled at ``per_minute``.

    Kept per process: with several replicas each enforces its own bucket (a user spread over
    N replicas may get up to N times the rate; platform delivery keeps most users on one).
    """

    per_minute: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, user: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = self.clock()
        tokens, since = self._buckets.get(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) * self.per_minute / 60)
        allowed = tokens >= 1
        self._buckets[user] = (tokens - 1 if allowed else tokens, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return allowed

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled completely (they equal a fresh one)."""
        refill = 60 * self.burst / self.per_minute
        for user, (_, since) in list(self._buckets.items()):
            if now - since >= refill:
                del self._buckets[user]


@dataclass
class Gate:
    """The arrival check: ``None`` lets a message through, else the bot text key to answer
    with (``denied`` or ``rate_limited``); ``silent`` denials get no answer at all."""

    allowlists: dict[str, Allowlist] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    silent_denials: bool = False

    def check(self, message: IncomingMessage) -> str | None:
        allowlist = self.allowlists.get(message.platform)
        if allowlist is not None and not allowlist.allows(message):
            return "denied"
        if self.limiter is not None and not self.limiter.allow(message.dify_user):
            return "rate_limited"
        return None


async def refuse(
    message: IncomingMessage, reply: Reply, verdict: str, *, gate: Gate, texts: Texts
) -> None:
    """Tell the user why there is no answer (unless denials are silent); never raises."""
    log.info("refused platform=%s reason=%s", message.platform, verdict)
    if verdict == "denied" and gate.silent_denials:
        return
    with best_effort("tell the user they were refused", log):
        await reply.fail("", texts.get(verdict, message.locale))

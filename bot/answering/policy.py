"""Who may ask (allowlists) and how often (a token bucket per user), decided on arrival."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.contract import Allowlist, Reply
from bot.models import IncomingMessage
from bot.ops.effort import best_effort
from bot.stores import Budgets
from bot.texts import Texts

log = logging.getLogger(__name__)


@dataclass
class RateLimiter:
    """A token bucket per Dify user: ``burst`` messages at once, refilled at ``per_minute``.

    The buckets live in ``budgets``: on PostgreSQL every replica shares them, so a user whose
    messages reach several replicas (Socket Mode spreads them) gets the rate once, not once per
    replica. One process keeps them in memory.
    """

    per_minute: float
    burst: int
    budgets: Budgets  # bot.delivery.buckets.MemoryBudgets for one process

    async def allow(self, user: str) -> bool:
        if self.per_minute <= 0:
            return True
        rate, burst = self.per_minute / 60, float(max(self.burst, 1))
        return await self.budgets.take(f"user/{user}", rate=rate, burst=burst) <= 0


@dataclass
class Gate:
    """The arrival check: ``None`` lets a message through, else the bot text key to answer
    with (``denied`` or ``rate_limited``); ``silent`` denials get no answer at all."""

    allowlists: dict[str, Allowlist] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    silent_denials: bool = False

    async def check(self, message: IncomingMessage) -> str | None:
        allowlist = self.allowlists.get(message.platform)
        if allowlist is not None and not allowlist.allows(message):
            return "denied"
        if self.limiter is not None and not await self.limiter.allow(message.dify_user):
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

"""Slack's rate limits as the delivery scheduler's buckets (``bot.delivery.scheduler``).

Slack counts each Web API method per workspace and app over a rolling minute (reference slack.md
§1): ``chat.update`` and ``chat.delete`` Tier 3 (50+/min), ``chat.startStream`` and
``chat.stopStream`` Tier 2 (20+/min), ``chat.appendStream`` Tier 4 (100+/min), ``chat.postMessage``
"several hundred per minute" per workspace and ~1/s per channel with short bursts, and
``assistant.threads.setStatus`` per channel (60/min). Every reply of a workspace, on every
replica, draws on the same buckets: the scheduler's account is the workspace (team id).

How a reply uses them (``sender.py``, ``native.py``, ``reply.py``): the final answer waits for
its slot first of all; the placeholder and the "thinking…" status are the sign of life; a native
stream starts only when a ``chat.startStream`` token is there now; interim edits and appends are
now or never, taking turns; deletes of superseded messages wait behind everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from slack_sdk.errors import SlackApiError

from bot.delivery.scheduler import Clock, Limit, Scheduler, Sleep
from bot.ops.metrics import Metrics
from bot.stores import Budgets

PLATFORM = "slack"
# Per minute, 90 % of each tier's floor: Slack's "50+" is a floor, and the margin absorbs clock
# skew between our buckets and Slack's windows. chat.update has its own setting
# (SLACK_UPDATE_BUDGET_PER_MINUTE); SLACK_BUDGET_SCALE multiplies the others.
LIMITS = {
    "chat.startStream": 18,
    "chat.stopStream": 18,
    "chat.appendStream": 90,
    "chat.delete": 45,
}
POSTS_PER_MINUTE = 270  # per workspace ("several hundred per minute")
CHANNEL_LIMITS = {"chat.postMessage": 54, "assistant.threads.setStatus": 54}


def slack_limits(update_per_minute: int, *, scale: float = 1.0) -> Mapping[str, tuple[Limit, ...]]:
    """The buckets of each method. A bucket never lets through more than the minute's count in
    any rolling minute (``Limit.per_minute``: half of it at once, the rest spread)."""
    limits: dict[str, tuple[Limit, ...]] = {
        method: (Limit.per_minute(round(n * scale)),) for method, n in LIMITS.items()
    }
    limits["chat.update"] = (Limit.per_minute(update_per_minute),)
    posts = round(POSTS_PER_MINUTE * scale)
    limits["chat.postMessage"] = (
        Limit.per_minute(posts),
        Limit.per_minute(round(CHANNEL_LIMITS["chat.postMessage"] * scale), per_channel=True),
    )
    # The status is the cheapest sign of life in a thread: most of the minute at once (a burst
    # of mentions in one channel), the rest spread; later status changes are best effort.
    status = round(CHANNEL_LIMITS["assistant.threads.setStatus"] * scale)
    burst = max(2.0, round(status * 5 / 6))
    limits["assistant.threads.setStatus"] = (
        Limit.per_minute(status, burst=burst, per_channel=True),
    )
    return limits


def slack_scheduler(
    budgets: Budgets,
    *,
    update_per_minute: int,
    scale: float = 1.0,
    metrics: Metrics | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> Scheduler:
    return Scheduler(
        PLATFORM,
        budgets,
        slack_limits(update_per_minute, scale=scale),
        rate_limited=retry_after_of,
        metrics=metrics,
        clock=clock,
        sleep=sleep,
    )


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from a 429's Retry-After, else None (any other error)."""
    return retry_after(exc) if isinstance(exc, SlackApiError) else None


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds from Retry-After when this is a 429, else None."""
    response = exc.response
    if response is None or response.status_code != 429:
        return None
    for name, value in dict(response.headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            with contextlib.suppress(ValueError):
                return max(float(raw), 0.0)
    return 1.0

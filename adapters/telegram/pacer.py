"""``TelegramPacer``: every rate-limited Bot API call goes through it, on the shared delivery
scheduler (``bot.delivery.scheduler``): the bot is the account, every replica draws on the same
buckets (``services.budgets``).

Telegram's flood limits (Bots FAQ, "My bot is hitting limits"): about one message per second in
one chat, no more than 20 per minute in a group, about 30 per second overall; edits count like
messages. sendMessageDraft has its own per-chat limit, undocumented (bots streaming a draft every
300 ms got 429 retry_after=3), so drafts get a bucket of their own at the same pace (and stay out
of the overall limit, which is on messages). A 429 carries ``parameters.retry_after``: that chat
(every lane) waits that long on every replica, then the call is sent again.

Priorities (``Priority``): the final answer and its files wait for their slot first of all;
interim edits and drafts are now or never (``send`` raises ``Skipped``), taking turns between
the answers streaming at once; keyboards added after the answer wait behind everything else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TypeVar

from adapters.telegram.api import TelegramError
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Account, Limit, Priority, Scheduler
from bot.ops.metrics import Metrics
from bot.stores import Budgets

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

PLATFORM = "telegram"
CHAT_INTERVAL = 1.0  # seconds between two messages/edits in one chat (Telegram allows a burst)
GROUP_PER_MINUTE = 20
# "About 30 a second" overall; Telegram counts arrivals, so a bucket that never lets more than 27
# through in any second leaves room for the network bunching requests sent evenly.
GLOBAL_PER_SECOND = 22
GLOBAL_BURST = 5
WINDOW_MARGIN = 1.0  # seconds added to the group's minute
RETRIES_ON_429 = 3
# Scheduler methods: a chat's messages and edits, a group's minute, drafts, setWebhook.
MESSAGE, GROUP, DRAFT = "message", "group", "draft"
CHAT_LANES = (MESSAGE, GROUP, DRAFT)


class Skipped(Exception):
    """An interim call found no slot now: it is not sent (a later one, or the final, follows)."""


def telegram_limits(
    *, interval: float = CHAT_INTERVAL, group_per_minute: int = GROUP_PER_MINUTE
) -> Mapping[str, tuple[Limit, ...]]:
    """The buckets of each lane. A chat's messages: one per ``interval`` (per chat) and the
    bot's overall pace; a group's messages also its rolling minute (``Limit.per_window``: half
    of it at once, the rest spread); drafts one per ``interval`` per chat, outside the overall
    pace; setWebhook about one a second per bot."""
    chat = Limit(rate=1.0 / interval, burst=1.0, per_channel=True)
    return {
        MESSAGE: (chat, Limit(rate=GLOBAL_PER_SECOND, burst=GLOBAL_BURST)),
        GROUP: (Limit.per_window(group_per_minute, 60.0 + WINDOW_MARGIN, per_channel=True),),
        DRAFT: (chat,),
        "setWebhook": (Limit(rate=1.0, burst=1.0),),
    }


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from a 429's ``retry_after``, else None (any other error)."""
    if isinstance(exc, TelegramError) and exc.status == 429:
        return float(exc.retry_after or 1.0)
    return None


class TelegramPacer:
    def __init__(
        self,
        *,
        budgets: Budgets | None = None,
        bot: str = "bot",
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        interval: float = CHAT_INTERVAL,
        group_per_minute: int = GROUP_PER_MINUTE,
    ) -> None:
        """``bot``: the bot's id (the token's public part before the colon), the account every
        replica of this bot shares."""
        self.scheduler = Scheduler(
            PLATFORM,
            budgets if budgets is not None else MemoryBudgets(clock=clock),
            telegram_limits(interval=interval, group_per_minute=group_per_minute),
            rate_limited=retry_after_of,
            metrics=metrics,
            clock=clock,
            sleep=sleep,
        )
        self._account: Account = self.scheduler.account(bot)
        self.refused = 0  # 429s Telegram answered anyway (metrics, tests)

    async def send(
        self,
        chat_id: int,
        call: Callable[[], Awaitable[T]],
        *,
        group: bool = False,
        lane: str = MESSAGE,
        priority: Priority = Priority.FINAL,
        turn_of: Hashable | None = None,
    ) -> T:
        """``call()`` when the chat's ``lane`` may send, again after each 429's retry_after.
        An ``INTERIM`` call goes now or never: ``Skipped`` when there is no slot now."""
        account, channel = self._account, str(chat_id)
        methods = [GROUP, lane] if group and lane == MESSAGE else [lane]
        if lane not in CHAT_LANES:
            channel = ""  # a call of the bot's own (setWebhook), not of a chat
        for attempt in range(RETRIES_ON_429 + 1):
            if priority is Priority.INTERIM:
                # The cheap per-second bucket first: a token taken in vain from it costs less
                # than one of a group's twenty a minute.
                for method in reversed(methods):
                    if not await account.now(
                        method, priority=priority, channel=channel, turn_of=turn_of
                    ):
                        raise Skipped(method)
            else:
                for method in methods:  # the group's minute first: its wait is the long one
                    await account.slot(method, priority=priority, channel=channel)
            try:
                return await call()
            except TelegramError as exc:
                pause = retry_after_of(exc)
                if pause is None or attempt == RETRIES_ON_429:
                    raise
                self.refused += 1
                lanes = (CHAT_LANES if group else (MESSAGE, DRAFT)) if channel else methods
                for method in lanes:
                    await account.block(method, pause, channel=channel)
                if priority is Priority.INTERIM:
                    raise Skipped(lane) from None  # a later edit (or the final) follows
        raise AssertionError("unreachable")  # the loop returns or raises

    def done(self, reply: Hashable) -> None:
        """An answer has ended: it no longer takes turns for interim calls."""
        self._account.done(reply)

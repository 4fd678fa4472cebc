"""``TelegramPacer``: every rate-limited Bot API call goes through it (issue 16's shared scheduler
can replace it behind the same ``send``).

Telegram's flood limits (Bots FAQ, "My bot is hitting limits"): about one message per second in
one chat, no more than 20 per minute in a group, about 30 per second overall; edits count like
messages. sendMessageDraft has its own per-chat limit, undocumented (bots streaming a draft every
300 ms got 429 retry_after=3), so drafts get a lane of their own at the same pace (and stay out
of the overall limit, which is on messages). A 429 carries ``parameters.retry_after``: that chat
(every lane) waits that long, then the call is sent again. Calls waiting for the overall limit
take turns in order, so no chat starves while many stream at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from adapters.telegram.api import TelegramError

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

CHAT_INTERVAL = 1.0  # seconds between two messages/edits in one chat
GROUP_PER_MINUTE = 20
# "About 30 a second" overall; Telegram counts arrivals, so a few under it, and windows a little
# longer than Telegram's, leave room for the network bunching requests sent evenly.
GLOBAL_PER_SECOND = 25
WINDOW_MARGIN = 1.0  # seconds added to the group's minute
RETRIES_ON_429 = 3
_FORGET_AFTER = 120.0  # a chat silent this long loses its lanes (memory stays bounded)


@dataclass
class _Chat:
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    next_at: dict[str, float] = field(default_factory=dict)
    minute: deque[float] = field(default_factory=deque)  # groups: sends in the last minute
    paused_until: float = 0.0
    used_at: float = 0.0


class TelegramPacer:
    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        interval: float = CHAT_INTERVAL,
        group_per_minute: int = GROUP_PER_MINUTE,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._interval = interval
        self._group_per_minute = group_per_minute
        self._chats: dict[int, _Chat] = {}
        self._next_overall = 0.0
        self._overall = asyncio.Lock()  # FIFO: chats waiting for the overall limit take turns
        self.waited = 0.0  # seconds spent waiting for a turn (metrics, tests)
        self.refused = 0  # 429s Telegram answered anyway

    async def send(
        self,
        chat_id: int,
        call: Callable[[], Awaitable[T]],
        *,
        group: bool = False,
        lane: str = "message",
    ) -> T:
        """``call()`` when the chat's ``lane`` may send, again after each 429's retry_after."""
        chat = self._chat(chat_id)
        lock = chat.locks.setdefault(lane, asyncio.Lock())
        async with lock:
            for attempt in range(RETRIES_ON_429 + 1):
                await self._turn(chat, lane, group=group)
                try:
                    return await call()
                except TelegramError as exc:
                    if exc.status != 429 or attempt == RETRIES_ON_429:
                        raise
                    self.refused += 1
                    chat.paused_until = self._clock() + (exc.retry_after or 1.0)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _chat(self, chat_id: int) -> _Chat:
        now = self._clock()
        if len(self._chats) > 1000:
            for key in [k for k, c in self._chats.items() if now - c.used_at > _FORGET_AFTER]:
                if not any(lock.locked() for lock in self._chats[key].locks.values()):
                    del self._chats[key]
        chat = self._chats.setdefault(chat_id, _Chat())
        chat.used_at = now
        return chat

    async def _turn(self, chat: _Chat, lane: str, *, group: bool) -> None:
        while (wait := self._wait(chat, lane, group=group)) > 0:
            await self._pause(wait)
        if lane != "draft":  # drafts are not messages: Telegram's overall limit is on messages
            async with self._overall:  # evenly spaced: a burst would arrive as one
                if (wait := self._next_overall - self._clock()) > 0:
                    await self._pause(wait)
                self._next_overall = self._clock() + 1.0 / GLOBAL_PER_SECOND
        now = self._clock()
        chat.next_at[lane] = now + self._interval
        if group and lane == "message":
            chat.minute.append(now)

    async def _pause(self, seconds: float) -> None:
        self.waited += seconds
        await self._sleep(seconds)

    def _wait(self, chat: _Chat, lane: str, *, group: bool) -> float:
        now = self._clock()
        waits = [chat.next_at.get(lane, 0.0) - now, chat.paused_until - now]
        if group and lane == "message":
            span = 60.0 + WINDOW_MARGIN
            waits.append(_window(chat.minute, span, self._group_per_minute, now))
        return max(waits)


def _window(sent: deque[float], span: float, limit: int, now: float) -> float:
    while sent and sent[0] <= now - span:
        sent.popleft()
    return 0.0 if len(sent) < limit else sent[len(sent) - limit] + span - now

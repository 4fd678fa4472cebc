"""The Official Account's 5-second rule: passive replies, redeliveries, push and fetch fallbacks.

WeChat waits 5 s for a reply, then drops the connection and delivers the same MsgId again, three
deliveries in all (~15 s); with no valid reply the user sees "该公众号暂时无法提供服务". So:

* every delivery of one MsgId joins the one answer (a row in the shared store), never a new run;
* a delivery answers passively if the answer is ready within ``window`` (4.5 s) of its arrival;
* otherwise a verified service account replies ``success`` (WeChat stops retrying) and pushes the
  answer by customer-service messages, showing "typing" meanwhile; an unverified account lets the
  first deliveries lapse so WeChat delivers again, and on the last one says "answer coming, send
  any message"; the user's next message then fetches the stored answer;
* an answer longer than one message goes out as several (push) or one per message (fetch), with
  a notice while more is owed. A part is claimed in the store before it is sent, so nothing is
  sent twice, and a failed push gives it back, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.tencent.background import Background
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.outbound import CustomerService, to_parts
from bot.texts import Texts
from storage.wechat_answers import PendingAnswer, PendingAnswers

log = logging.getLogger(__name__)

PUSH_QUOTA = 5  # customer-service messages per user message (since 2023-06-12)
PUSH_WINDOW = 48 * 3600.0  # ... within 48 hours of it
TYPING_SPAN = 30.0  # "typing" may only be shown within 30 s of the user's message
TYPING_LASTS = 15.0


@dataclass(frozen=True, slots=True)
class PassiveTiming:
    """``window``: how long a delivery waits for the answer (WeChat gives up at 5 s);
    ``deliveries``: how many times WeChat delivers one MsgId; ``poll``: how often a delivery
    whose answer runs on another replica looks at the store."""

    window: float = 4.5
    deliveries: int = 3
    poll: float = 0.25

    @property
    def hold(self) -> float:
        """A lapsing delivery is held this long at most (WeChat has hung up well before)."""
        return self.window * 1.6


Start = Callable[[str], Awaitable[None]]  # starts answering the message with this answer id
Connected = Callable[[], bool]


class PassiveAnswers:
    """Decides each delivery's passive reply and delivers what no passive reply can carry."""

    def __init__(
        self,
        store: PendingAnswers,
        *,
        account: str,
        texts: Texts,
        locale: str,
        timing: PassiveTiming = PassiveTiming(),
        service: CustomerService | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.account = account
        self.timing = timing
        self._texts = texts
        self._locale = locale
        self._service = service
        self._clock = clock
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._background = Background()

    async def reply_for(
        self, user_id: str, msg_id: str, *, arrival: float, start: Start, connected: Connected
    ) -> str | None:
        """The text of this delivery's passive reply, or None for ``success``."""
        trigger = await self.store.arrive(self.account, msg_id, user_id)
        target = trigger.target or trigger.id
        if trigger.deliveries == 1:
            owed = await self.store.owed_to(self.account, user_id, exclude=trigger.id)
            if owed is not None:  # the user was told to send something to get this answer
                await self.store.fetching(trigger.id, owed.id)
                target = owed.id
            else:
                await start(trigger.id)
        answer = await self._wait(target, arrival + self.timing.window)
        if answer is None:
            return None
        if answer.done:
            return await self._take_passive(answer, trigger)
        return await self._not_ready(answer, trigger, arrival=arrival, connected=connected)

    async def complete(self, answer_id: str, user_id: str, text: str) -> None:
        """The answer is final (called from the answering task)."""
        answer = await self.store.complete(answer_id, to_parts(text, self._more))
        self._changed.set()
        self._changed = asyncio.Event()
        if answer is not None and answer.handoff and self._service is not None:
            await self._push(answer_id, trigger_id=answer_id, user_id=user_id)

    async def close(self) -> None:
        await self._background.close()

    # ---- one delivery ---------------------------------------------------------------------

    async def _wait(self, answer_id: str, deadline: float) -> PendingAnswer | None:
        """The answer once done, or as it stands at ``deadline``."""
        while True:
            changed = self._changed
            answer = await self.store.get(answer_id)
            left = deadline - self._clock()
            if answer is None or answer.done or left <= 0:
                return answer
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.timing.poll, left)):
                    await changed.wait()

    async def _take_passive(self, answer: PendingAnswer, trigger: PendingAnswer) -> str | None:
        remaining = answer.remaining
        if not remaining or not await self.store.take(answer.id, taken=answer.taken):
            return None  # already delivered (a late redelivery), or another delivery took it
        if len(remaining) == 1:
            return remaining[0]
        if self._service is not None:
            self._spawn(self._push(answer.id, trigger_id=trigger.id, user_id=answer.user_id))
            return remaining[0]
        await self.store.mark(answer.id, notified=True)
        return f"{remaining[0]}\n\n{self._more}"

    async def _not_ready(
        self, answer: PendingAnswer, trigger: PendingAnswer, *, arrival: float, connected: Connected
    ) -> str | None:
        if self._service is not None:
            # Verified: reply ``success`` now (no timeout alarms) and push the answer when done.
            await self.store.mark(answer.id, handoff=True)
            self._spawn(self._typing(answer.user_id, answer.id, since=trigger.created_at))
            latest = await self.store.get(answer.id)
            if latest is not None and latest.done:  # finished while we marked: push it ourselves
                self._spawn(self._push(answer.id, trigger_id=answer.id, user_id=answer.user_id))
            return None
        last = (
            trigger.deliveries >= self.timing.deliveries
            or arrival - trigger.created_at >= 2 * self.timing.window  # WeChat's 3rd, at ~10 s
        )
        if not last:
            # Unverified: let this delivery lapse so WeChat delivers again in a moment.
            await self._hold(arrival + self.timing.hold, connected)
            return None
        await self.store.mark(answer.id, notified=True)
        return self._texts.get("wechat_pending", self._locale)

    async def _hold(self, until: float, connected: Connected) -> None:
        while connected() and (left := until - self._clock()) > 0:
            await self._sleep(min(self.timing.poll, left))

    # ---- customer-service push (verified accounts) ------------------------------------------

    async def _push(self, answer_id: str, *, trigger_id: str, user_id: str) -> None:
        answer, trigger = await self.store.get(answer_id), await self.store.get(trigger_id)
        if answer is None or trigger is None or not answer.done or self._service is None:
            return
        batch = answer.remaining[: max(0, PUSH_QUOTA - trigger.pushes)]
        overflow = len(answer.remaining) > len(batch)
        for i, part in enumerate(batch):
            taken = answer.taken + i
            text = f"{part}\n\n{self._more}" if overflow and i == len(batch) - 1 else part
            if not await self.store.take(answer_id, taken=taken):
                return  # another delivery is handing these parts out
            if not await self._send(answer_id, trigger_id, user_id, text):
                await self.store.give_back(answer_id, taken=taken + 1, to=taken)
                return
        if overflow:
            await self.store.mark(answer_id, notified=True)

    async def _send(self, answer_id: str, trigger_id: str, user_id: str, text: str) -> bool:
        if not await self.store.spend_push(trigger_id, limit=PUSH_QUOTA, window=PUSH_WINDOW):
            log.info("customer-service quota used up; answer %s waits for the user", answer_id)
            return False
        assert self._service is not None
        try:
            await self._service.send_text(user_id, text)
        except WeChatAPIError as exc:
            # 45015 (48-hour window), 45047 (quota), 48001 (not verified)...: the answer stays
            # owed and the user's next message fetches it.
            log.warning("customer-service send failed (%s); answer kept for the user", exc.code)
            return False
        return True

    async def _typing(self, user_id: str, answer_id: str, *, since: float) -> None:
        assert self._service is not None
        while self._clock() - since < TYPING_SPAN:
            try:
                await self._service.typing(user_id)
            except WeChatAPIError as exc:  # 45080/45081: outside the window or already typing
                log.debug("typing not shown: %s", exc.code)
                return
            answer = await self._wait(answer_id, self._clock() + TYPING_LASTS)
            if answer is None or answer.done:
                return

    def _spawn(self, work: Awaitable[None]) -> None:
        self._background.spawn(work)

    @property
    def _more(self) -> str:
        return self._texts.get("wechat_more", self._locale)

"""The Official Account's 5-second rule: passive replies, redeliveries, push and fetch fallbacks.

WeChat waits 5 s for a reply, then drops the connection and delivers the same MsgId again, three
deliveries in all (~15 s); with no valid reply the user sees "该公众号暂时无法提供服务". So:

* every delivery of one MsgId joins the one answer (its journal entry), never a new run — on
  whichever replica it lands;
* a delivery answers passively if the answer is ready within ``window`` (4.5 s) of its arrival;
* otherwise a verified service account replies ``success`` (WeChat stops retrying) and pushes the
  answer by customer-service messages, showing "typing" meanwhile; an unverified account lets the
  first deliveries lapse so WeChat delivers again, and on the last one says "answer coming, send
  any message"; the user's next message then fetches the stored answer;
* an answer longer than one message goes out as several (push) or one per message (fetch), with
  a notice while more is owed. A part is claimed in the state before it is sent, so nothing is
  sent twice, and a failed push gives it back, so nothing is lost.

The delivery state lives in the journal entry's reply state (``Delivered``), changed atomically
(``bot.stores.ReplyStates``), so replicas share it and a replica that dies mid-answer leaves
nothing stranded: another one takes the entry over and completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace

from adapters.background import Background
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.outbound import CustomerService, to_parts
from bot.stores import JournalEntry, ReplyStates, State

log = logging.getLogger(__name__)

PUSH_QUOTA = 5  # customer-service messages per user message (since 2023-06-12)
PUSH_WINDOW = 48 * 3600.0  # ... within 48 hours of it
TYPING_SPAN = 30.0  # "typing" may only be shown within 30 s of the user's message
TYPING_LASTS = 15.0
KEEP_OWED = 3 * 24 * 3600.0  # an owed answer waits this long for the user's next message


@dataclass(frozen=True, slots=True)
class Delivered:
    """One user message's answer as WeChat is given it (the journal entry's reply state).

    ``parts``: the answer's messages once ``done``; ``taken``: how many were handed out;
    ``deliveries``: how many times WeChat delivered the MsgId; ``pushes``: customer-service
    messages spent on it; ``notified``: the user was told to send any message to get it;
    ``handoff``: no passive reply will carry it, push it when done."""

    done: bool = False
    parts: tuple[str, ...] = ()
    taken: int = 0
    deliveries: int = 0
    pushes: int = 0
    notified: bool = False
    handoff: bool = False

    @property
    def remaining(self) -> tuple[str, ...]:
        return self.parts[self.taken :]

    @property
    def owed(self) -> bool:
        """The user still has something coming from this answer."""
        return (self.done and bool(self.remaining)) or (not self.done and self.notified)

    @classmethod
    def of(cls, state: State | None) -> Delivered:
        if not state:
            return cls()
        known = {k: v for k, v in state.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "parts": tuple(known.get("parts", ()))})

    def to_state(self) -> State:
        return {**asdict(self), "parts": list(self.parts)}


@dataclass(frozen=True, slots=True)
class PassiveTiming:
    """``window``: how long a delivery waits for the answer (WeChat gives up at 5 s);
    ``deliveries``: how many times WeChat delivers one MsgId; ``poll``: how often a delivery
    whose answer runs on another replica looks at the journal."""

    window: float = 4.5
    deliveries: int = 3
    poll: float = 0.25

    @property
    def hold(self) -> float:
        """A lapsing delivery is held this long at most (WeChat has hung up well before)."""
        return self.window * 1.6


Connected = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class _Answer:
    """An answer as one delivery sees it: its entry, its state, when the message came."""

    id: int
    state: Delivered
    created_at: float
    user_id: str = ""


class PassiveAnswers:
    """Decides each delivery's passive reply and delivers what no passive reply can carry."""

    def __init__(
        self,
        states: ReplyStates,
        *,
        text: Callable[[str, str | None], str],
        locale: str,
        timing: PassiveTiming = PassiveTiming(),
        service: CustomerService | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.states = states
        self.timing = timing
        self._text = text
        self._locale = locale
        self._service = service
        self._clock = clock
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._background = Background()

    async def owed_to(self, place: str) -> JournalEntry | None:
        """The oldest answer the user of ``place`` is still owed (told to send any message)."""
        for entry in await self.states.recent(place, since=self._clock() - KEEP_OWED):
            if entry.reply.get("fetch") is None and Delivered.of(entry.reply_state).owed:
                return entry
        return None

    async def reply_for(
        self, entry_id: int, *, target: int, arrival: float, connected: Connected
    ) -> str | None:
        """The text of this delivery's passive reply, or None for ``success``. ``target`` is
        the entry whose answer this delivery carries (itself, or the owed one it fetches)."""
        trigger = await self._arrive(entry_id)
        answer = await self._wait(target, arrival + self.timing.window)
        if answer is None:
            return None
        if answer.state.done:
            return await self._take_passive(answer, trigger)
        return await self._not_ready(answer, trigger, arrival=arrival, connected=connected)

    async def complete(self, entry_id: int, user_id: str, text: str) -> None:
        """The answer is final (called from the answering task, here or on a taker)."""

        def done(state: Delivered) -> Delivered:
            if state.done:  # completed already (by a replica that died before finishing)
                return state
            return replace(state, done=True, parts=tuple(to_parts(text, self._more)))

        answer = await self._change(entry_id, done)
        self._changed.set()
        self._changed = asyncio.Event()
        if answer.handoff and self._service is not None:
            await self._push(entry_id, trigger_id=entry_id, user_id=user_id)

    async def close(self) -> None:
        await self._background.close()

    # ---- one delivery ---------------------------------------------------------------------

    async def _arrive(self, entry_id: int) -> _Answer:
        state = await self._change(entry_id, lambda s: replace(s, deliveries=s.deliveries + 1))
        entry = await self.states.get(entry_id)
        return _Answer(entry_id, state, entry.created_at if entry else self._clock())

    async def _load(self, entry_id: int) -> _Answer | None:
        entry = await self.states.get(entry_id)
        if entry is None:
            return None
        user = str(entry.reply.get("user") or "")
        return _Answer(entry.id, Delivered.of(entry.reply_state), entry.created_at, user)

    async def _wait(self, entry_id: int, deadline: float) -> _Answer | None:
        """The answer once done, or as it stands at ``deadline``."""
        while True:
            changed = self._changed
            answer = await self._load(entry_id)
            left = deadline - self._clock()
            if answer is None or answer.state.done or left <= 0:
                return answer
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.timing.poll, left)):
                    await changed.wait()

    async def _take_passive(self, answer: _Answer, trigger: _Answer) -> str | None:
        remaining = answer.state.remaining
        if not remaining or not await self._take(answer.id, taken=answer.state.taken):
            return None  # already delivered (a late redelivery), or another delivery took it
        if len(remaining) == 1:
            return remaining[0]
        if self._service is not None:
            self._spawn(self._push(answer.id, trigger_id=trigger.id, user_id=answer.user_id))
            return remaining[0]
        await self._mark(answer.id, notified=True)
        return f"{remaining[0]}\n\n{self._more}"

    async def _not_ready(
        self, answer: _Answer, trigger: _Answer, *, arrival: float, connected: Connected
    ) -> str | None:
        if self._service is not None:
            # Verified: reply ``success`` now (no timeout alarms) and push the answer when done.
            await self._mark(answer.id, handoff=True)
            self._spawn(self._typing(answer.user_id, answer.id, since=trigger.created_at))
            latest = await self._load(answer.id)
            if latest is not None and latest.state.done:  # finished while we marked: push it
                self._spawn(self._push(answer.id, trigger_id=answer.id, user_id=answer.user_id))
            return None
        last = (
            trigger.state.deliveries >= self.timing.deliveries
            or arrival - trigger.created_at >= 2 * self.timing.window  # WeChat's 3rd, at ~10 s
        )
        if not last:
            # Unverified: let this delivery lapse so WeChat delivers again in a moment.
            await self._hold(arrival + self.timing.hold, connected)
            return None
        await self._mark(answer.id, notified=True)
        return self._text("wechat_pending", self._locale)

    async def _hold(self, until: float, connected: Connected) -> None:
        while connected() and (left := until - self._clock()) > 0:
            await self._sleep(min(self.timing.poll, left))

    # ---- customer-service push (verified accounts) ------------------------------------------

    async def _push(self, entry_id: int, *, trigger_id: int, user_id: str) -> None:
        answer, trigger = await self._load(entry_id), await self._load(trigger_id)
        if answer is None or trigger is None or not answer.state.done or self._service is None:
            return
        batch = answer.state.remaining[: max(0, PUSH_QUOTA - trigger.state.pushes)]
        overflow = len(answer.state.remaining) > len(batch)
        for i, part in enumerate(batch):
            taken = answer.state.taken + i
            text = f"{part}\n\n{self._more}" if overflow and i == len(batch) - 1 else part
            if not await self._take(entry_id, taken=taken):
                return  # another delivery is handing these parts out
            if not await self._send(entry_id, trigger, user_id, text):
                await self._give_back(entry_id, taken=taken + 1, to=taken)
                return
        if overflow:
            await self._mark(entry_id, notified=True)

    async def _send(self, entry_id: int, trigger: _Answer, user_id: str, text: str) -> bool:
        if not await self._spend_push(trigger):
            log.info("customer-service quota used up; answer %d waits for the user", entry_id)
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

    async def _typing(self, user_id: str, entry_id: int, *, since: float) -> None:
        assert self._service is not None
        while self._clock() - since < TYPING_SPAN:
            try:
                await self._service.typing(user_id)
            except WeChatAPIError as exc:  # 45080/45081: outside the window or already typing
                log.debug("typing not shown: %s", exc.code)
                return
            answer = await self._wait(entry_id, self._clock() + TYPING_LASTS)
            if answer is None or answer.state.done:
                return

    # ---- the state, changed atomically ------------------------------------------------------

    async def _change(self, entry_id: int, change: Callable[[Delivered], Delivered]) -> Delivered:
        stored = await self.states.change(
            entry_id, lambda state: change(Delivered.of(state)).to_state()
        )
        return Delivered.of(stored)

    async def _take(self, entry_id: int, *, taken: int) -> bool:
        """Claim the part after the first ``taken``; False if someone else moved first."""
        return await self._swap(entry_id, taken, taken + 1)

    async def _give_back(self, entry_id: int, *, taken: int, to: int) -> bool:
        """Undo a claim whose delivery failed, so the part stays owed."""
        return await self._swap(entry_id, taken, to)

    async def _swap(self, entry_id: int, was: int, now: int) -> bool:
        moved = False

        def swap(state: Delivered) -> Delivered:
            nonlocal moved
            moved = state.taken == was
            return replace(state, taken=now) if moved else state

        await self._change(entry_id, swap)
        return moved

    async def _spend_push(self, trigger: _Answer) -> bool:
        """Use one customer-service message of this user message's quota, if any is left."""
        if self._clock() - trigger.created_at >= PUSH_WINDOW:
            return False
        spent = False

        def spend(state: Delivered) -> Delivered:
            nonlocal spent
            spent = state.pushes < PUSH_QUOTA
            return replace(state, pushes=state.pushes + 1) if spent else state

        await self._change(trigger.id, spend)
        return spent

    async def _mark(
        self, entry_id: int, *, notified: bool | None = None, handoff: bool | None = None
    ) -> None:
        """The user is owed this answer (told to fetch it, or promised a push): the journal
        keeps it past its dedup window, until the user's next message takes it."""

        def mark(state: Delivered) -> Delivered:
            return replace(
                state,
                notified=state.notified if notified is None else notified,
                handoff=state.handoff if handoff is None else handoff,
            )

        await self._change(entry_id, mark)
        await self.states.keep(entry_id, until=self._clock() + KEEP_OWED)

    def _spawn(self, work: Awaitable[None]) -> None:
        self._background.spawn(work)

    @property
    def _more(self) -> str:
        return self._text("wechat_more", self._locale)

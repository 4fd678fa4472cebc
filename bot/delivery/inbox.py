"""The inbox: every platform message recorded, deduplicated, leased, ordered, then answered once.

``accept`` routes the message to its app and records it in the journal before the platform is
acknowledged: a redelivery (platform retries, a second replica receiving the same event) is a
no-op on every replica. The entry is answered when its turn comes (the journal orders a
conversation's messages across replicas), under a lease this replica renews; the reply is built
by the message's platform from what the adapter said of where to answer (``Platform.reply``), so
an entry whose replica died is built and answered the same way on whichever replica sweeps it
up (``bot.delivery.takeover``). Leases are owned by ``replica``: with a ``membership``
(``difybot serve``) that is REPLICA_ID, which survives a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.answering.answerer import Answerer, Attempt
from bot.answering.forms import FORM_KEY, OWN_PLACE, view_of
from bot.answering.run import Outcome
from bot.contract import (
    Accepted,
    Delivery,
    FormAnswer,
    FormVerdict,
    FormView,
    Platform,
    Reply,
)
from bot.delivery.leasing import LeaseKeeper
from bot.delivery.takeover import Sweeper, Takeover
from bot.dify.stream import AnswerStream
from bot.errors import DifyError, ShuttingDown
from bot.models import (
    Answer,
    AppFacts,
    ConversationKey,
    IncomingMessage,
    from_record,
    to_record,
)
from bot.ops.effort import best_effort, cancelled
from bot.ops.metrics import Metrics
from bot.ops.pace import LoadGauge
from bot.routing import Routing
from bot.stores import Journal, JournalEntry, Membership, PendingForm
from bot.texts import Texts

log = logging.getLogger(__name__)

SUGGESTIONS_WAIT = 15.0  # seconds: Dify's suggested questions are an LLM call of their own


class JournalInbox:
    """Implements ``bot.contract.Inbox`` for the platforms; the composition root registers the
    platforms, then ``start``s it and ``close``s it."""

    def __init__(
        self,
        journal: Journal,
        answerer: Answerer,
        *,
        texts: Texts,
        metrics: Metrics,
        routing: Routing | None = None,
        load: LoadGauge | None = None,
        replica: str = "",
        membership: Membership | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.answerer = answerer
        self.texts = texts
        self.metrics = metrics
        self.routing = routing or Routing()
        self.load = load or LoadGauge()  # measured from ``start``: edits thin out under load
        self.membership = membership
        self.replica = membership.replica_id if membership else replica or uuid.uuid4().hex[:16]
        self._sleep = sleep
        self._platforms: dict[str, Platform] = {}
        self._leases = LeaseKeeper(journal, self.replica, sleep=sleep, clock=clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._entries: set[int] = set()
        self._subscribed: dict[int, AnswerStream] = {}  # a submitted form's run, by entry
        self._sweeper: Sweeper | None = None
        self._closing = False

    def register(self, platform: Platform) -> None:
        """A platform's replies (the composition root, before ``start``)."""
        self._platforms[platform.name] = platform

    @property
    def platforms(self) -> Mapping[str, Platform]:
        return self._platforms

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # ---- bot.contract.Inbox ------------------------------------------------------------------

    async def accept(
        self, message: IncomingMessage, *, where: Mapping[str, Any], answer: bool = True
    ) -> Accepted:
        if self._closing:
            raise ShuttingDown("difybot is shutting down")
        message = self.routing.apply(message)
        entry_id, new = await self.journal.record(
            f"{message.key.app}/{message.platform}/{message.workspace}/{message.message_id}",
            conversation_key=message.key.as_str(),
            platform=message.platform,
            message=to_record(message),
            reply=dict(where),
            owner=self.replica,
            place=message.key.place,
            done=not answer,
        )
        if not new:
            log.info("duplicate delivery dropped platform=%s entry=%d", message.platform, entry_id)
            self.metrics.duplicates.labels(message.platform).inc()
            return Accepted(entry_id, new=False)
        if not answer:
            return Accepted(entry_id, new=True)
        self._leases.hold(entry_id)  # renewed while it waits for its turn, too
        return Accepted(entry_id, new=True, answer=self._start(entry_id, message, where))

    async def stop(self, key: ConversationKey) -> bool:
        return await self.answerer.stop(key)

    async def reset(self, key: ConversationKey) -> bool:
        return await self.answerer.reset(key)

    def text(self, key: str, locale: str | None = None) -> str:
        return self.texts.get(key, locale)

    def locale(
        self, platform: str, *, workspace: str = "", channel: str = "", command: str = ""
    ) -> str | None:
        return self.routing.resolve(
            platform, workspace=workspace, channel=channel, command=command
        ).locale

    def commands(self, platform: str) -> list[str]:
        return self.routing.commands(platform)

    async def facts(
        self, platform: str, *, workspace: str = "", channel: str = "", command: str = ""
    ) -> AppFacts:
        routed = self.routing.resolve(
            platform, workspace=workspace, channel=channel, command=command
        )
        return await self.answerer.apps.facts(routed.app)

    async def suggestions(self, answer: Answer) -> list[str]:
        apps = self.answerer.apps
        if not answer.message_id or not (await apps.facts(answer.app)).suggestions_after_answer:
            return []
        try:
            async with asyncio.timeout(SUGGESTIONS_WAIT):
                dify = apps.client(answer.app)
                return await dify.suggested(answer.message_id, user=answer.dify_user)
        except (DifyError, TimeoutError) as exc:
            log.info("no suggested questions: %s", exc)
            return []

    async def feedback(self, app: str, message_id: str, *, user: str, rating: str | None) -> None:
        await self.answerer.apps.client(app).feedback(message_id, rating=rating, user=user)

    async def form(self, ref: str) -> FormView | None:
        desk = self.answerer.forms
        pending = await desk.store.get(ref) if desk is not None else None
        return view_of(pending) if pending is not None else None

    async def answer_form(
        self,
        ref: str,
        *,
        action: str,
        inputs: Mapping[str, Any],
        user: str,
        locale: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> FormAnswer:
        desk = self.answerer.forms
        pending = await desk.store.get(ref) if desk is not None else None
        if desk is None or pending is None:
            return FormAnswer(FormVerdict.UNKNOWN, self.texts.get("form_expired", locale))
        dify = self.answerer.apps.client(pending.app)
        by = f"replica:{self.replica}"
        answer, stream = await desk.submit(
            pending, dify, action=action, inputs=inputs, user=user, by=by, locale=locale
        )
        if answer.verdict is FormVerdict.SUBMITTED:
            await self._continue(pending, where, stream)
        return answer

    async def _continue(
        self, pending: PendingForm, own: Mapping[str, Any] | None, stream: AnswerStream | None
    ) -> None:
        """The run goes on in the form's reply (or in ``own`` place), as a journal entry of its
        own: ordered in its conversation, leased, and taken over (reattached) if this replica
        dies meanwhile."""
        message = from_record(pending.message)
        where = {**pending.where, FORM_KEY: pending.ref}
        if own is not None:
            where = {**own, FORM_KEY: pending.ref, OWN_PLACE: True}
        entry_id, new = await self.journal.record(
            f"form/{pending.ref}",
            conversation_key=pending.conversation_key,
            platform=pending.platform,
            message=pending.message,
            reply=where,
            owner=self.replica,
            place=message.key.place,
        )
        if not new:
            if stream is not None:
                await stream.close()
            return
        if stream is not None:  # subscribed before the submit: the answer reads it here
            self._subscribed[entry_id] = stream
        self._leases.hold(entry_id)
        self._start(entry_id, message, where)

    # ---- answering entries -------------------------------------------------------------------

    def _start(
        self,
        entry_id: int,
        message: IncomingMessage,
        where: Mapping[str, Any],
        *,
        takeover: Takeover | None = None,
    ) -> asyncio.Task[None]:
        answer = functools.partial(self._answer, entry_id, message, where, takeover)
        task = asyncio.create_task(self._leases.answer(entry_id, answer))
        self._tasks.add(task)
        self._entries.add(entry_id)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._entries.discard(entry_id))
        return task

    async def _answer(
        self,
        entry_id: int,
        message: IncomingMessage,
        where: Mapping[str, Any],
        takeover: Takeover | None,
    ) -> Outcome:
        platform = self._platforms[message.platform]
        pending = await self._form_answered(entry_id, message, where, takeover)
        if pending is None and FORM_KEY in where:
            log.warning("form %s forgotten: its run is not followed", where[FORM_KEY])
            return Outcome.FAILED
        delivery, reply, same = await self._reply_for(
            platform, entry_id, message, where, takeover, pending
        )
        attempt = Attempt(
            fresh=takeover is None and pending is None,
            restarted=takeover is not None and takeover.shown and pending is None,
            handed_over=platform.takeover,
            shown=self._shown_hook(reply, entry_id),
            delivery=delivery,
            run=takeover.run if takeover is not None else None,
            keep_run=functools.partial(self.journal.save_run, entry_id),
        )
        if pending is None:
            return await self.answerer.answer(message, reply, attempt)
        if not pending.native:
            return await self.answerer.answer_by_text(pending, message, reply, attempt)
        subscribed = self._subscribed.pop(entry_id, None)
        try:
            return await self.answerer.resume(
                pending, reply, attempt, same=same, subscribed=subscribed
            )
        finally:
            if subscribed is not None:  # closed once read; here if never read
                await subscribed.close()

    async def _reply_for(
        self,
        platform: Platform,
        entry_id: int,
        message: IncomingMessage,
        where: Mapping[str, Any],
        takeover: Takeover | None,
        pending: PendingForm | None,
    ) -> tuple[Delivery, Reply, bool]:
        """The entry's delivery and reply, and whether it is a clicked form's own reply: the
        run goes on there, where it stands, unless the adapter named a place of its own for
        it (``answer_form(where=...)``) or the platform cannot edit what it delivered."""
        state = takeover.state if takeover is not None else None
        same = pending is not None and pending.native and not where.get(OWN_PLACE)
        if same and pending is not None:
            where = pending.where
            if state is None and (paused := await self.journal.get(pending.entry_id)):
                state = paused.reply_state
        save = functools.partial(self.journal.save_reply_state, entry_id)
        delivery = Delivery(entry_id, message, where, save=save, state=state,
                            taken_over=takeover is not None or same)  # fmt: skip
        reply = platform.reply(delivery)
        if same and not reply.capabilities.can_edit:  # a message of its own, a state of its own
            delivery = dataclasses.replace(delivery, state=takeover.state if takeover else None)
            return delivery, platform.reply(delivery), False
        return delivery, reply, same

    async def _form_answered(
        self,
        entry_id: int,
        message: IncomingMessage,
        where: Mapping[str, Any],
        takeover: Takeover | None,
    ) -> PendingForm | None:
        """The form this entry answers: a clicked one (its ref in ``where``); or, for the text
        fallback, the conversation's open form (or the one this entry answered before its
        replica died). Only Chatflow and Workflow apps pause, so only they are looked up."""
        desk = self.answerer.forms
        if desk is None:
            return None
        if ref := where.get(FORM_KEY):
            return await desk.store.get(str(ref))
        if self.answerer.apps.client(message.key.app).mode not in ("advanced-chat", "workflow"):
            return None
        if takeover is not None and (pending := await desk.store.answered(entry_id)):
            return pending
        pending = await desk.store.open_in(message.key.as_str())
        if pending is not None and desk.lapsed(pending):  # too late: the message goes to Dify
            await desk.store.settle(pending.ref, "expired")
            return None
        return pending

    def _shown_hook(self, reply: Reply, entry_id: int) -> Callable[[], Awaitable[None]] | None:
        """For an answer shown as it grows: note in the journal, once, that the user saw some
        of it (a replica that takes it over then tells them it starts again)."""
        if not reply.capabilities.can_edit:
            return None
        return functools.partial(self.journal.mark_shown, entry_id)

    # ---- takeover ----------------------------------------------------------------------------

    def start(self) -> None:
        """Measure the load, and sweep up the messages whose replica died (or our last run's)."""
        self.load.start()
        if self._sweeper is None:
            self._sweeper = Sweeper(self, self.journal, sleep=self._sleep,
                                    membership=self.membership)  # fmt: skip

    async def take_over(self) -> int:
        """One sweep now: start every orphaned message this replica can answer; how many."""
        return await Sweeper.sweep_once(self, self.journal)

    @property
    def restorable(self) -> list[str]:
        """The platforms whose orphaned answers this replica finishes."""
        return [name for name, platform in self._platforms.items() if platform.takeover]

    def handles(self, entry_id: int) -> bool:
        return entry_id in self._entries

    def resume(self, entry: JournalEntry, message: IncomingMessage) -> bool:
        """Answer a journal entry a replica left (another one, or this one's last run); False if
        it is already handled here."""
        if entry.id in self._entries or self._closing or message.platform not in self._platforms:
            return False
        takeover = Takeover(entry.id, shown=entry.shown, state=entry.reply_state, run=entry.run)
        self._start(entry.id, message, entry.reply, takeover=takeover)
        return True

    # ---- lifecycle ---------------------------------------------------------------------------

    async def idle(self) -> None:
        """Until every answer started so far has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking messages; let answers finish for up to ``grace`` s, then cancel them
        (they are released, so another replica takes them over at once)."""
        self._closing = True
        await self.load.stop()
        if self._sweeper is not None:
            await self._sweeper.stop()
        tasks = set(self._tasks)
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        await cancelled(*tasks)
        for stream in self._subscribed.values():  # answers that never began
            await stream.close()
        await self._leases.close()
        if self.membership is not None:  # a successor under this id need not wait for us
            with best_effort("leave the replica registry", log):
                await self.membership.leave()

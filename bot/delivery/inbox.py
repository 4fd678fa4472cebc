"""The dispatcher: one task per message, in arrival order per conversation, answered from Dify."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.answering.policy import Gate, refuse
from bot.answering.preparing import Prepare, Unanswerable, as_is
from bot.answering.progressive import ProgressiveReply
from bot.answering.report import report_answer
from bot.answering.run import AnswerRun, Outcome, answer_in_conversation, remember
from bot.contract import Reply, Restorer
from bot.delivery.leasing import LeaseKeeper
from bot.delivery.ordering import ConversationQueues
from bot.delivery.takeover import Sweeper, Takeover
from bot.dify.client import DifyClient
from bot.models import ConversationKey, IncomingMessage, to_record
from bot.ops.logs import TRACE_ID
from bot.ops.metrics import Metrics
from bot.ops.pace import LoadGauge
from bot.routing import Routing, under_every_app
from bot.texts import Texts
from storage.conversations import ConversationStore
from storage.journal import Journal
from storage.replicas import Membership

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Running:
    run: AnswerRun
    user: str


class Dispatcher:
    """``accept``/``submit`` return at once (platforms want their ack within 3-5 s); the answer
    runs in a tracked task. Messages with the same conversation key wait for each other, in order.

    With a ``journal`` (the SQL inbound journal), ``accept`` records each platform message before
    the platform is acked: redeliveries are dropped on every replica, a lease says who answers,
    and a replica that dies has its messages finished by another (``start`` runs the sweeper).
    Leases are owned by ``replica``: with a ``membership`` (``difybot serve``) that is REPLICA_ID,
    which survives a restart; the sweeper keeps the membership's heartbeat.
    """

    def __init__(
        self,
        dify: DifyClient,
        store: ConversationStore,
        *,
        texts: Texts | None = None,
        journal: Journal | None = None,
        gate: Gate | None = None,
        apps: Mapping[str, DifyClient] | None = None,
        routing: Routing | None = None,
        metrics: Metrics | None = None,
        prepare: Prepare = as_is,
        replica: str = "",
        membership: Membership | None = None,
        edit_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.dify = dify
        self.store = store
        self.texts = texts or Texts()
        self.journal = journal
        self.gate = gate
        self.apps = dict(apps or {})
        self.routing = routing or Routing()  # adapters route their messages through it
        self.metrics = metrics or Metrics()
        self.prepare = prepare
        self._membership = membership
        self.replica = membership.replica_id if membership else replica or uuid.uuid4().hex[:16]
        self.restorers: dict[str, Restorer] = {}
        self._clock = clock
        self._sleep = sleep
        self._queues = ConversationQueues()
        self._tasks: set[asyncio.Task[None]] = set()
        self._entries: set[int] = set()
        self._running: dict[str, _Running] = {}
        self._sweeper: Sweeper | None = None
        self._leases = LeaseKeeper(journal, self.replica, sleep=sleep) if journal else None
        self.load = LoadGauge()  # measured from ``start``: interim edits thin out under load
        self._progressive = functools.partial(
            ProgressiveReply,
            interval=edit_interval,
            clock=clock,
            sleep=sleep,
            stretch=self.load.stretch,
        )
        self._closing = False

    def dify_for(self, key: ConversationKey | str) -> DifyClient:
        """The Dify app of a conversation, or of a route name (unknown names: the default)."""
        return self.apps.get(key if isinstance(key, str) else key.app, self.dify)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def accept(
        self, message: IncomingMessage, reply: Reply, *, where: dict[str, Any]
    ) -> asyncio.Task[None] | None:
        """Record a platform message (await this before acking the platform), then answer it
        once: the answer's task, or None for a redelivery (seen here or on another replica).
        ``where``, JSON-safe, lets the adapter's ``restorers[platform]`` rebuild the reply on
        another replica."""
        if self._closing:
            raise RuntimeError("dispatcher is shutting down")
        if self.journal is None:
            return self.submit(message, reply)
        entry_id, new = await self.journal.record(
            f"{message.key.app}/{message.platform}/{message.workspace}/{message.message_id}",
            conversation_key=message.key.as_str(),
            platform=message.platform,
            message=to_record(message),
            reply=where,
            owner=self.replica,
        )
        if not new:
            log.info("duplicate delivery dropped platform=%s entry=%d", message.platform, entry_id)
            self.metrics.duplicates.labels(message.platform).inc()
            return None
        assert self._leases is not None
        self._leases.hold(entry_id)  # renewed while it waits for its turn, too
        return self._start(message, reply, entry_id)

    def submit(self, message: IncomingMessage, reply: Reply) -> asyncio.Task[None]:
        """Queue a message behind earlier ones of its conversation (no journal) and return its
        task: for the terminal, and for adapters that keep their own delivery records."""
        if self._closing:
            raise RuntimeError("dispatcher is shutting down")
        return self._start(message, reply, None)

    def _start(
        self,
        message: IncomingMessage,
        reply: Reply,
        entry_id: int | None,
        *,
        check: bool = True,
        takeover: Takeover | None = None,
    ) -> asyncio.Task[None]:
        if check:  # a new message (not one taken over from another replica)
            self.metrics.messages.labels(message.platform, message.key.app).inc()
        verdict = self.gate.check(message) if self.gate is not None and check else None
        if verdict is not None:  # refused on arrival: no need to wait for the conversation
            return self._track(asyncio.create_task(self._refuse(message, reply, verdict, entry_id)))
        key = message.key.as_str()
        if entry_id is None:
            previous, done = self._queues.enter(key)  # now: arrival order is call order
            work = self._run(key, message, reply, previous, done)
        else:
            # The journal orders a conversation's messages (its claims), across replicas and
            # takeovers alike; a local queue too could deadlock against it: a message taken
            # over from a dead replica is older than the ones waiting here.
            work = self._answer_leased(key, message, reply, entry_id, takeover)
        task = self._track(asyncio.create_task(work))
        if entry_id is not None:
            self._entries.add(entry_id)
            task.add_done_callback(lambda _: self._entries.discard(entry_id))
        return task

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refuse(
        self, message: IncomingMessage, reply: Reply, verdict: str, entry_id: int | None
    ) -> None:
        self.metrics.failed.labels(message.platform, message.key.app, "refused").inc()
        assert self.gate is not None
        await refuse(message, reply, verdict, gate=self.gate, texts=self.texts)
        if entry_id is not None and self.journal is not None:
            await self.journal.finish(entry_id, self.replica, failed=True)

    async def _run(
        self,
        key: str,
        message: IncomingMessage,
        reply: Reply,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
    ) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._answer(key, message, reply)
        finally:
            self._queues.leave(key, previous, done)

    async def _answer_leased(
        self,
        key: str,
        message: IncomingMessage,
        reply: Reply,
        entry_id: int,
        takeover: Takeover | None = None,
    ) -> None:
        assert self._leases is not None
        answer = functools.partial(
            self._answer, key, message, reply, entry_id=entry_id, takeover=takeover
        )
        await self._leases.answer(entry_id, reply, answer)

    async def _answer(
        self,
        key: str,
        message: IncomingMessage,
        reply: Reply,
        *,
        entry_id: int | None = None,
        takeover: Takeover | None = None,
    ) -> Outcome:
        trace_id = uuid.uuid4().hex
        TRACE_ID.set(trace_id)  # this task's log records carry it (each answer has its task)
        progressive = self._progressive(reply, on_shown=self._shown_hook(reply, entry_id))
        if takeover is not None and takeover.shown:
            # Part of the answer was on screen when its replica let go; Dify cannot continue
            # that run (yet: resumable runs), so the answer starts again and says so.
            progressive.note(self.texts.get("restarted", message.locale), interim=True)
        run = AnswerRun(
            self.dify_for(message.key),
            message,
            progressive,
            texts=self.texts,
            trace_id=trace_id,
            prepare=self.prepare,
            on_conversation=functools.partial(remember, self.store),
            clock=self._clock,
        )
        self._running[key] = _Running(run, message.dify_user)
        self.metrics.in_flight.inc()
        outcome = Outcome.FAILED
        try:
            outcome = await answer_in_conversation(run, self.store)
        except asyncio.CancelledError:
            outcome = Outcome.INTERRUPTED
            if entry_id is None:  # a journaled answer is handed over, not cut short
                await run.tell_interrupted()
            raise
        except Unanswerable as exc:
            log.info("not asked trace=%s: %s", trace_id, exc)
            run.failure = "unanswerable"
            await progressive.fail(str(exc))
        except Exception:  # the one catch-all per message: log it, tell the user
            log.exception("answer failed trace=%s", trace_id)
            await run.tell_failure("error")
        finally:
            self._running.pop(key, None)
            self.metrics.in_flight.dec()
            await remember(self.store, run)
            report_answer(run, outcome, self.metrics)
        return outcome

    def _shown_hook(
        self, reply: Reply, entry_id: int | None
    ) -> Callable[[], Awaitable[None]] | None:
        """For a journaled answer that is shown as it grows: note in the journal, once, that the
        user saw some of it (a replica that takes it over then tells them it starts again)."""
        if entry_id is None or self.journal is None or not reply.capabilities.can_edit:
            return None
        return functools.partial(self.journal.mark_shown, entry_id)

    # ---- takeover ------------------------------------------------------------------------

    def start(self) -> None:
        """Measure the load, and run the sweeper that finishes messages whose replica died
        (with a journal only)."""
        self.load.start()
        if self._sweeper is None and self.journal is not None:
            self._sweeper = Sweeper(self, self.journal, sleep=self._sleep,
                                    membership=self._membership)  # fmt: skip

    async def take_over(self) -> int:
        """One sweep now: start every orphaned message this replica can restore; how many."""
        assert self.journal is not None
        return await Sweeper.sweep_once(self, self.journal)

    def handles(self, entry_id: int) -> bool:
        return entry_id in self._entries

    def resume(self, message: IncomingMessage, reply: Reply, takeover: Takeover) -> bool:
        """Answer a journal entry a replica left (another one, or this one's last run); False if
        it is already handled here."""
        if takeover.entry_id in self._entries or self._closing:
            return False
        self._start(message, reply, takeover.entry_id, check=False, takeover=takeover)
        return True

    # ---- control -------------------------------------------------------------------------

    async def stop(self, key: ConversationKey) -> bool:
        """Stop this conversation's running answer, whichever app runs it; False if none."""
        for routed in under_every_app(key, self.apps):
            running = self._running.get(routed.as_str())
            if running is not None and running.run.task_id:
                await running.run.dify.stop(running.run.task_id, user=running.user)
                return True
        return False

    async def idle(self) -> None:
        """Until every answer started so far has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def reset(self, key: ConversationKey) -> bool:
        """Forget the conversation, under every app: the next message starts a new one."""
        deleted = [await self.store.delete(k) for k in under_every_app(key, self.apps)]
        return any(deleted)

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking messages; let answers finish for up to ``grace`` s, then cancel them
        (journaled ones are released so another replica takes them over at once)."""
        self._closing = True
        await self.load.stop()
        if self._sweeper is not None:
            await self._sweeper.stop()
        tasks = set(self._tasks)
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._leases is not None:
            await self._leases.close()
        if self._membership is not None:  # a successor under this id need not wait for us
            with contextlib.suppress(Exception):
                await self._membership.leave()

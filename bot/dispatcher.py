"""The dispatcher: one task per message, in arrival order per conversation, answered from Dify."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.answering import AnswerRun, Outcome
from bot.dify import DifyClient
from bot.errors import ConversationNotFound
from bot.leasing import Lease
from bot.models import ConversationKey, IncomingMessage, from_record, to_record
from bot.protocols import Reply, Restorer, Resumable
from bot.streaming import ProgressiveReply
from bot.texts import Texts
from storage.conversations import ConversationStore
from storage.journal import Journal

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
    """

    def __init__(
        self,
        dify: DifyClient,
        store: ConversationStore,
        *,
        texts: Texts | None = None,
        journal: Journal | None = None,
        replica: str = "",
        edit_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.dify = dify
        self.store = store
        self.texts = texts or Texts()
        self.journal = journal
        self.replica = replica or uuid.uuid4().hex[:16]
        self.restorers: dict[str, Restorer] = {}
        self._edit_interval = edit_interval
        self._clock = clock
        self._sleep = sleep
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._entries: set[int] = set()
        self._running: dict[str, _Running] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def accept(
        self, message: IncomingMessage, reply: Reply, *, where: dict[str, Any]
    ) -> asyncio.Task[None] | None:
        """Take a platform message: record it (await this before acking the platform), then
        answer it once; the answer's task, or None when the message was already taken (a
        redelivery, here or on another replica).

        ``where`` is the adapter's JSON-safe description of where the answer goes; with it, the
        adapter's restorer (``restorers[platform]``) rebuilds the reply on another replica.
        """
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
            return None
        return self._start(message, reply, entry_id)

    def submit(self, message: IncomingMessage, reply: Reply) -> asyncio.Task[None]:
        """Queue a message behind earlier ones of its conversation (no journal) and return its
        task: for the terminal, and for adapters that keep their own delivery records."""
        if self._closing:
            raise RuntimeError("dispatcher is shutting down")
        return self._start(message, reply, None)

    def _start(
        self, message: IncomingMessage, reply: Reply, entry_id: int | None
    ) -> asyncio.Task[None]:
        key = message.key.as_str()
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        task = asyncio.create_task(self._run(key, message, reply, previous, done, entry_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if entry_id is not None:
            self._entries.add(entry_id)
            task.add_done_callback(lambda _: self._entries.discard(entry_id))
        return task

    async def _run(
        self,
        key: str,
        message: IncomingMessage,
        reply: Reply,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
        entry_id: int | None,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            if entry_id is None:
                await self._answer(key, message, reply)
            else:
                await self._answer_leased(key, message, reply, entry_id)
        finally:
            _release(previous, done)
            if self._tails.get(key) is done and done.done():
                del self._tails[key]

    async def _answer_leased(
        self, key: str, message: IncomingMessage, reply: Reply, entry_id: int
    ) -> None:
        assert self.journal is not None
        lease = Lease(self.journal, entry_id, self.replica, sleep=self._sleep)
        async with lease.kept():
            if not await lease.acquire():
                return  # finished, or taken over by another replica
            if isinstance(reply, Resumable):
                reply.bind_state(functools.partial(self.journal.save_reply_state, entry_id))
            try:
                outcome = await self._answer(key, message, reply, handover=True)
            except asyncio.CancelledError:
                await lease.release()  # shutting down: another replica finishes this answer
                raise
            await lease.finish(failed=outcome is Outcome.FAILED)

    async def _answer(
        self, key: str, message: IncomingMessage, reply: Reply, *, handover: bool = False
    ) -> Outcome:
        trace_id = uuid.uuid4().hex
        started = self._clock()
        progressive = ProgressiveReply(
            reply, interval=self._edit_interval, clock=self._clock, sleep=self._sleep
        )
        run = AnswerRun(self.dify, message, progressive, texts=self.texts, trace_id=trace_id)
        self._running[key] = _Running(run, message.dify_user)
        outcome = Outcome.FAILED
        try:
            outcome = await self._answer_once_or_fresh(message, run)
        except asyncio.CancelledError:
            outcome = Outcome.INTERRUPTED
            if not handover:
                await _interrupted(run)
            raise
        except Exception:  # the one catch-all per message: log it, tell the user
            log.exception("answer failed trace=%s", trace_id)
            await run.tell_failure("error")
        finally:
            self._running.pop(key, None)
            if run.conversation_id:
                await self._remember(message.key, run.conversation_id, message.dify_user)
            log.info(
                "answered trace=%s platform=%s app=%s outcome=%s chunks=%d chars=%d edits=%d ms=%d",
                trace_id, message.platform, message.key.app, outcome.value, run.chunks,
                len(progressive.text), progressive.edits, (self._clock() - started) * 1000,
            )  # fmt: skip
        return outcome

    async def _answer_once_or_fresh(self, message: IncomingMessage, run: AnswerRun) -> Outcome:
        conversation_id = await self.store.get(message.key)
        try:
            await run.reply.start()
            return await run.ask(conversation_id)
        except ConversationNotFound:
            if not conversation_id or run.chunks:
                raise
        # Dify no longer knows the stored conversation: forget it and ask once more, fresh.
        log.info("stale conversation dropped trace=%s", run.trace_id)
        await self.store.delete(message.key)
        return await run.ask(None)

    async def _remember(self, key: ConversationKey, conversation_id: str, user: str) -> None:
        try:
            await self.store.set(key, conversation_id, dify_user=user)
        except Exception:
            log.exception("could not save conversation id")

    # ---- takeover ------------------------------------------------------------------------

    def start(self) -> None:
        """Run the sweeper that finishes messages whose replica died (with a journal only)."""
        if self.journal is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        assert self.journal is not None
        rounds = 0
        while True:
            try:
                await self.take_over()
                if rounds % 600 == 0:  # about every few hours: drop day-old dedup records
                    await self.journal.prune(older_than=86_400)
            except Exception:
                log.warning("journal sweep failed", exc_info=True)
            rounds += 1
            await self._sleep(self.journal.lease / 2)

    async def take_over(self) -> int:
        """Start answering every orphaned message this replica can restore; how many."""
        assert self.journal is not None
        taken = 0
        for entry in await self.journal.orphans():
            restore = self.restorers.get(entry.platform)
            if entry.id in self._entries or restore is None or self._closing:
                continue
            try:
                message = from_record(entry.message)
                reply = restore(entry.reply, entry.reply_state)
            except Exception:
                log.exception("cannot restore journal entry %d", entry.id)
                continue
            log.info("taking over entry=%d platform=%s", entry.id, entry.platform)
            self._start(message, reply, entry.id)
            taken += 1
        return taken

    # ---- control -------------------------------------------------------------------------

    async def stop(self, key: ConversationKey) -> bool:
        """Stop the answer running for this conversation (Dify's stop API); False if none."""
        running = self._running.get(key.as_str())
        if running is None or not running.run.task_id:
            return False
        await self.dify.stop(running.run.task_id, user=running.user)
        return True

    async def idle(self) -> None:
        """Until every answer started so far has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def reset(self, key: ConversationKey) -> bool:
        """Forget the conversation: the next message starts a new one."""
        return await self.store.delete(key)

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking messages; let answers finish for up to ``grace`` s, then cancel them
        (journaled ones are released so another replica takes them over at once)."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = set(self._tasks)
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _release(previous: asyncio.Future[None] | None, done: asyncio.Future[None]) -> None:
    """Let the next message go; if we were cancelled while still waiting, it waits for ours."""
    if previous is None or previous.done():
        _settle(done)
    else:
        previous.add_done_callback(lambda _: _settle(done))


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


async def _interrupted(run: AnswerRun) -> None:
    with contextlib.suppress(BaseException):
        async with asyncio.timeout(2.0):
            await run.tell_failure("interrupted")

"""The dispatcher: one task per message, in arrival order per conversation, answered from Dify."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.answering import AnswerRun, Outcome
from bot.dify import DifyClient
from bot.errors import ConversationNotFound
from bot.models import ConversationKey, IncomingMessage
from bot.protocols import Reply
from bot.streaming import ProgressiveReply
from bot.texts import Texts
from storage.conversations import ConversationStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Running:
    run: AnswerRun
    user: str


class Dispatcher:
    """``submit`` returns at once (platforms want their ack within 3–5 s); the answer runs in a
    tracked task. Messages with the same conversation key wait for each other, in order."""

    def __init__(
        self,
        dify: DifyClient,
        store: ConversationStore,
        *,
        texts: Texts | None = None,
        edit_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.dify = dify
        self.store = store
        self.texts = texts or Texts()
        self._edit_interval = edit_interval
        self._clock = clock
        self._sleep = sleep
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, _Running] = {}
        self._closing = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, message: IncomingMessage, reply: Reply) -> asyncio.Task[None]:
        """Queue a message behind earlier ones of its conversation and return its task."""
        if self._closing:
            raise RuntimeError("dispatcher is shutting down")
        key = message.key.as_str()
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        task = asyncio.create_task(self._run(key, message, reply, previous, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            _release(previous, done)
            if self._tails.get(key) is done and done.done():
                del self._tails[key]

    async def _answer(self, key: str, message: IncomingMessage, reply: Reply) -> None:
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

    async def stop(self, key: ConversationKey) -> bool:
        """Stop the answer running for this conversation (Dify's stop API); False if none."""
        running = self._running.get(key.as_str())
        if running is None or not running.run.task_id:
            return False
        await self.dify.stop(running.run.task_id, user=running.user)
        return True

    async def reset(self, key: ConversationKey) -> bool:
        """Forget the conversation: the next message starts a new one."""
        return await self.store.delete(key)

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking messages; let answers finish for up to ``grace`` s, then cancel them."""
        self._closing = True
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

"""The answerer: one message's answer, from the policy gate to the last edit of its reply.

    gate (allowlist, rate) ─► conversation (stored id) ─► Dify run ─► progressive reply
                                      ▲                       │ Dify names the conversation
                                      └──── kept, once ◄──────┘

It owns the conversation id: read before asking, kept as soon as Dify names it (an answer cut
short, or finished by another replica, continues the same conversation), forgotten when Dify no
longer knows it. Nothing else writes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from logging import ERROR

from bot.answering.policy import Gate, refuse
from bot.answering.progressive import ProgressiveReply
from bot.answering.report import report_answer
from bot.answering.run import AnswerRun, Outcome
from bot.contract import Reply
from bot.dify.apps import DifyApps
from bot.errors import ConversationNotFound
from bot.models import ConversationKey, IncomingMessage
from bot.ops.effort import best_effort
from bot.ops.logs import TRACE_ID
from bot.ops.metrics import Metrics
from bot.ops.pace import LoadGauge
from bot.preparing import Prepare, Unanswerable, as_is
from bot.routing import under_every_app
from bot.stores import ConversationStore
from bot.texts import Texts

log = logging.getLogger(__name__)

Shown = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """How this answer came about: ``fresh`` for a message just received (the gate counts it),
    else taken over from a replica that let go; ``restarted``: part of an earlier attempt was
    on screen; ``handed_over``: a cancellation hands the answer to another replica, so the user
    is not told it was interrupted; ``shown``: called once some of the answer is on screen."""

    fresh: bool = True
    restarted: bool = False
    handed_over: bool = True
    shown: Shown | None = None


class Answerer:
    def __init__(
        self,
        apps: DifyApps,
        store: ConversationStore,
        *,
        texts: Texts,
        metrics: Metrics,
        gate: Gate | None = None,
        prepare: Prepare = as_is,
        edit_interval: float | None = None,
        load: LoadGauge | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.apps = apps
        self._store = store
        self._texts = texts
        self._metrics = metrics
        self._gate = gate
        self._prepare = prepare
        self._clock = clock
        self._progressive = functools.partial(
            ProgressiveReply,
            interval=edit_interval,
            clock=clock,
            sleep=sleep,
            stretch=load.stretch if load is not None else None,
        )
        self._running: dict[str, AnswerRun] = {}

    async def answer(
        self, message: IncomingMessage, reply: Reply, attempt: Attempt = Attempt()
    ) -> Outcome:
        """Answer ``message`` in ``reply``; a failure is told to the user, never raised."""
        if attempt.fresh:
            self._metrics.messages.labels(message.platform, message.key.app).inc()
            verdict = await self._gate.check(message) if self._gate is not None else None
            if verdict is not None:
                return await self._refuse(message, reply, verdict)
        trace_id = uuid.uuid4().hex
        TRACE_ID.set(trace_id)  # this task's log records carry it (each answer has its task)
        progressive = self._progressive(reply, on_shown=attempt.shown)
        if attempt.restarted:
            # Part of the answer was on screen when its replica let go; Dify cannot continue
            # that run (yet: resumable runs), so the answer starts again and says so.
            progressive.note(self._texts.get("restarted", message.locale), interim=True)
        run = AnswerRun(
            self.apps.client(message.key.app),
            message,
            progressive,
            texts=self._texts,
            trace_id=trace_id,
            prepare=self._prepare,
            on_conversation=self._keep,
            clock=self._clock,
        )
        return await self._run(run, attempt)

    async def _run(self, run: AnswerRun, attempt: Attempt) -> Outcome:
        key = run.message.key.as_str()
        self._running[key] = run
        self._metrics.in_flight.inc()
        outcome = Outcome.FAILED
        try:
            outcome = await self._in_conversation(run)
        except asyncio.CancelledError:
            outcome = Outcome.INTERRUPTED
            if not attempt.handed_over:
                await run.tell_interrupted()
            raise
        except Unanswerable as exc:
            log.info("not asked trace=%s: %s", run.trace_id, exc)
            run.failure = "unanswerable"
            await run.reply.fail(str(exc))
        except Exception:  # the one catch-all per message: log it, tell the user
            log.exception("answer failed trace=%s", run.trace_id)
            await run.tell_failure("error")
        finally:
            if self._running.get(key) is run:
                del self._running[key]
            self._metrics.in_flight.dec()
            await self._keep(run)
            report_answer(run, outcome, self._metrics)
        return outcome

    async def _in_conversation(self, run: AnswerRun) -> Outcome:
        """Answer in the stored conversation; if Dify no longer knows it, forget it and ask once
        more, fresh (only before any of the answer was shown)."""
        key = run.message.key
        conversation_id = await self._store.get(key)
        try:
            await run.reply.start()
            return await run.ask(conversation_id)
        except ConversationNotFound:
            if not conversation_id or run.chunks:
                raise
        log.info("stale conversation dropped trace=%s", run.trace_id)
        await self._store.delete(key)
        return await run.ask(None)

    async def _keep(self, run: AnswerRun) -> None:
        """The one place a conversation id is stored (refreshing its idle clock), once a run."""
        if not run.conversation_id or run.conversation_saved:
            return
        message = run.message
        with best_effort(f"save the conversation id trace={run.trace_id}", log, level=ERROR):
            await self._store.set(message.key, run.conversation_id, dify_user=message.dify_user)
            run.conversation_saved = True

    async def _refuse(self, message: IncomingMessage, reply: Reply, verdict: str) -> Outcome:
        self._metrics.failed.labels(message.platform, message.key.app, "refused").inc()
        assert self._gate is not None
        await refuse(message, reply, verdict, gate=self._gate, texts=self._texts)
        return Outcome.FAILED

    # ---- control -------------------------------------------------------------------------

    async def stop(self, key: ConversationKey) -> bool:
        """Stop this conversation's running answer, whichever app runs it; False if none."""
        for routed in under_every_app(key, self.apps.extra):
            run = self._running.get(routed.as_str())
            if run is not None and run.task_id:
                await run.dify.stop(run.task_id, user=run.message.dify_user)
                return True
        return False

    async def reset(self, key: ConversationKey) -> bool:
        """Forget the conversation, under every app: the next message starts a new one."""
        deleted = [await self._store.delete(k) for k in under_every_app(key, self.apps.extra)]
        return any(deleted)

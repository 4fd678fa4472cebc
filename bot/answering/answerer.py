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
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from logging import ERROR
from typing import Any

from bot.answering.forms import Continued, FormDesk, from_form_record
from bot.answering.policy import Gate, refuse
from bot.answering.progressive import ProgressiveReply
from bot.answering.report import report_answer
from bot.answering.run import AnswerRun, Outcome
from bot.contract import Delivery, FormVerdict, Reply
from bot.dify.apps import DifyApps
from bot.dify.stream import AnswerStream
from bot.errors import ConversationNotFound, DifyError, RunNotFound
from bot.models import Answer, AnswerEnd, ConversationKey, FormRequest, IncomingMessage, from_record
from bot.ops.effort import best_effort
from bot.ops.logs import TRACE_ID
from bot.ops.metrics import Metrics
from bot.ops.pace import LoadGauge
from bot.preparing import Prepare, Unanswerable, as_is
from bot.routing import under_every_app
from bot.stores import ConversationStore, PendingForm
from bot.texts import Texts

log = logging.getLogger(__name__)

Shown = Callable[[], Awaitable[None]]
KeepRun = Callable[[dict[str, Any]], Awaitable[None]]


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
    delivery: Delivery | None = None  # the journal entry answered (a pause keeps its form)
    run: Mapping[str, Any] | None = None  # the Dify run an earlier attempt followed
    keep_run: KeepRun | None = None  # where this attempt keeps the run it follows


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
        forms: FormDesk | None = None,
        show_reasoning: bool = False,
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
        self.forms = forms
        self._show_reasoning = show_reasoning

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
        run = self._answer_run(message, progressive, trace_id, attempt)
        saved = attempt.run or {}
        if saved.get("id") and run.resumable:  # a Chatflow/Workflow run goes on: reattach
            return await self._run(run, attempt, self._reattached(run, saved, attempt))
        if attempt.restarted:
            # Part of the answer was on screen when its replica let go, and Dify cannot
            # continue that run (a Chatbot or Agent app): it starts again and says so.
            progressive.note(self._texts.get("restarted", message.locale), interim=True)
        return await self._run(run, attempt, self._in_conversation(run))

    async def _reattached(
        self, run: AnswerRun, saved: Mapping[str, Any], attempt: Attempt
    ) -> Outcome:
        """Follow the run an earlier attempt was following (its replica died), from Dify's
        snapshot, never rewinding what it showed; if Dify no longer has it, ask again."""
        run_id, shown = str(saved["id"]), str(saved.get("shown") or "")
        await run.reply.start()  # a reply rebuilt from its state: edits what it showed
        try:
            stream = await run.dify.subscribe(
                run_id, user=run.message.dify_user, snapshot=True, shown=shown
            )
        except RunNotFound:
            log.info("run to reattach is gone; asking again trace=%s", run.trace_id)
            if attempt.restarted:
                run.reply.note(self._texts.get("restarted", run.message.locale), interim=True)
            return await run.ask(await self._store.get(run.message.key))
        except DifyError as exc:
            return await run.failed(exc)
        run.reply.preset(shown)
        return await run.follow(run_id, shown=shown, subscribed=stream)

    def _answer_run(
        self,
        message: IncomingMessage,
        progressive: ProgressiveReply,
        trace_id: str,
        attempt: Attempt,
    ) -> AnswerRun:
        run = AnswerRun(
            self.apps.client(message.key.app),
            message,
            progressive,
            texts=self._texts,
            trace_id=trace_id,
            prepare=self._prepare,
            on_conversation=self._keep,
            on_pause=functools.partial(self._paused, delivery=attempt.delivery),
            on_run=attempt.keep_run,
            show_reasoning=self._show_reasoning,
            clock=self._clock,
        )
        progressive.before_edit = run.keep_shown
        return run

    async def resume(
        self,
        pending: PendingForm,
        reply: Reply,
        attempt: Attempt,
        *,
        same: bool = False,
        subscribed: AnswerStream | None = None,
    ) -> Outcome:
        """Follow a run whose form was answered, from Dify's snapshot of it. ``same``: in the
        reply that showed the form (rebuilt from its saved state, its text kept); else in a
        reply of its own (the text fallback's answering message), showing what is new."""
        message = from_record(pending.message)
        trace_id = uuid.uuid4().hex
        TRACE_ID.set(trace_id)
        if not same:
            reply = Continued(reply, before=pending.shown)
        progressive = self._progressive(reply, on_shown=attempt.shown)
        # Taken over while it was going on: the text its last replica showed.
        shown = str((attempt.run or {}).get("shown") or pending.shown)
        if same:
            progressive.preset(shown)
        run = self._answer_run(message, progressive, trace_id, attempt)
        run.conversation_saved = True  # the question's answer kept it already
        body = self._followed(run, pending, shown, same=same, subscribed=subscribed)
        return await self._run(run, attempt, body)

    async def answer_by_text(
        self, pending: PendingForm, message: IncomingMessage, reply: Reply, attempt: Attempt
    ) -> Outcome:
        """The text fallback: ``message`` answers the conversation's open form (a field's
        value, or an action by number or title) instead of going to Dify. Once the form is
        complete it is submitted and the run goes on in this message's reply."""
        assert self.forms is not None
        desk, locale = self.forms, message.locale
        if pending.status != "open":  # this entry submitted it, then its replica died
            return await self.resume(pending, reply, attempt)
        gathered, action = desk.take_text(pending, message.text)
        form = from_form_record(pending.form)
        log.info("form answered by a message platform=%s app=%s ref=%s fields=%d action=%s",
                 message.platform, message.key.app, pending.ref, len(gathered),
                 action or "-")  # fmt: skip
        if action is None:
            await desk.store.gather(pending.ref, gathered)
            return await self._say(reply, desk.prompt(form, gathered, locale))
        entry = attempt.delivery.entry_id if attempt.delivery else 0
        submitted, stream = await desk.submit(
            pending, self.apps.client(pending.app), action=action, inputs=gathered,
            user=message.author, by=f"entry:{entry}", locale=locale,
        )  # fmt: skip
        if submitted.verdict is FormVerdict.SUBMITTED:
            return await self.resume(pending, reply, attempt, subscribed=stream)
        if submitted.verdict in (FormVerdict.INVALID, FormVerdict.FAILED):
            await desk.store.gather(pending.ref, {})  # the fields are asked again
            return await self._say(reply, f"{submitted.notice}\n\n{desk.prompt(form, {}, locale)}")
        return await self._say(reply, submitted.notice)

    async def _say(self, reply: Reply, text: str) -> Outcome:
        progressive = self._progressive(reply)
        await progressive.start()
        await progressive.finish(Answer(), text=text)
        return Outcome.ANSWERED

    async def _followed(
        self,
        run: AnswerRun,
        pending: PendingForm,
        shown: str,
        *,
        same: bool,
        subscribed: AnswerStream | None,
    ) -> Outcome:
        if not same:
            await run.reply.start()
        return await run.follow(
            pending.workflow_run_id, shown=shown, subscribed=subscribed,
            answered=frozenset({pending.token}),
        )  # fmt: skip

    async def _paused(
        self, run: AnswerRun, end: AnswerEnd, *, delivery: Delivery | None
    ) -> Outcome:
        """The run waits for a person: keep its form and show it in this reply (the platform's
        buttons, or the text fallback). A form the Service API cannot answer (e-mail or console
        delivery only) is said to be out of reach here."""
        form = next((f for f in end.forms if f.answerable), None)
        if form is None or self.forms is None or delivery is None:
            await run.tell_failure("paused")
            return Outcome.FAILED
        if len(end.forms) > 1:  # parallel forms: the next pause shows the next one
            log.info("run paused on %d forms; showing one trace=%s", len(end.forms), run.trace_id)
        progressive, message = run.reply, run.message
        form = form if form.workflow_run_id else _with_run(form, end.workflow_run_id)
        view = await self.forms.record(
            form, message, delivery, reply=progressive.raw, shown=progressive.text,
            dify_user=message.dify_user,
        )  # fmt: skip
        if progressive.shows_forms:
            await progressive.show_form(view)
        else:
            prompt = self.forms.prompt(view.form, {}, message.locale)
            text = "\n\n".join(p for p in (progressive.text, view.text, prompt) if p)
            await progressive.finish(run.paused_answer(end), text=text)
        return Outcome.PAUSED

    async def _run(self, run: AnswerRun, attempt: Attempt, body: Awaitable[Outcome]) -> Outcome:
        key = run.message.key.as_str()
        self._running[key] = run
        self._metrics.in_flight.inc()
        outcome = Outcome.FAILED
        try:
            outcome = await body
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


def _with_run(form: FormRequest, run_id: str) -> FormRequest:
    return dataclasses.replace(form, workflow_run_id=run_id)

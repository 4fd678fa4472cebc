"""One answer from Dify to a progressive reply: events applied, errors turned into one sentence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from enum import StrEnum
from typing import Any

import orjson

from bot.answering.progressive import ProgressiveReply
from bot.dify.client import AnswerRequest, DifyClient
from bot.dify.stream import AnswerStream
from bot.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyError,
    DifyQuotaExceeded,
    DifyRateLimited,
    DifyStreamCut,
    DifyStreamError,
    DifyUnavailable,
    RunNotFound,
)
from bot.models import (
    AgentThought,
    Answer,
    AnswerEnd,
    AnswerEvent,
    FileOut,
    FormFilled,
    FormTimedOut,
    IncomingMessage,
    Progress,
    Reasoning,
    TextDelta,
    TextReplace,
)
from bot.ops.effort import best_effort
from bot.preparing import Prepare, Prepared, as_is
from bot.texts import Texts

log = logging.getLogger(__name__)

# App modes whose runs can be followed again (GET /workflow/{id}/events): Chatflow, Workflow.
RESUMABLE = frozenset({"advanced-chat", "workflow"})
REATTACHES = 3  # a run's stream cut more often than this in one answer fails it
# Nodes that do visible work worth a status line; start/answer/end are plumbing.
_QUIET_NODES = frozenset({"start", "answer", "end", ""})
_QUOTA_CODES = frozenset({"provider_quota_exceeded", "rate_limit_error"})


class Outcome(StrEnum):
    ANSWERED = "answered"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    PAUSED = "paused"  # a form waits for a person; the run goes on once it is answered


Paused = Callable[["AnswerRun", AnswerEnd], Awaitable[Outcome]]


class AnswerRun:
    """Asks Dify for one message and drives the progressive reply until the answer is shown."""

    def __init__(
        self,
        dify: DifyClient,
        message: IncomingMessage,
        reply: ProgressiveReply,
        *,
        texts: Texts,
        trace_id: str,
        prepare: Prepare = as_is,
        on_conversation: Callable[[AnswerRun], Awaitable[None]] | None = None,
        on_pause: Paused | None = None,
        on_run: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        show_reasoning: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dify = dify
        self.message = message
        self.reply = reply
        self.texts = texts
        self.trace_id = trace_id
        self._prepare = prepare
        self._prepared: Prepared | None = None
        self.chunks = 0
        self.conversation_id = ""
        self.conversation_saved = False
        self._on_conversation = on_conversation
        self._on_pause = on_pause
        self._show_reasoning = show_reasoning
        self.reasoning = ""
        self._thinking = False
        self._sticky = ""  # a status that node events do not clear (thinking, a form's fate)
        self.workflow_run_id = ""  # a Chatflow or Workflow run: it can be followed again
        self._on_run = on_run
        self._run_saved: tuple[str, str] | None = None  # (run, text) as last kept
        self.reattaches = 0
        self._answered: frozenset[str] = frozenset()  # forms submitted: their pause is stale
        self._stream: AnswerStream | None = None
        self._files_out: list[FileOut] = []
        self._clock = clock
        self.started_at = clock()
        self.first_text_at: float | None = None  # when Dify's first answer text came
        self.failure = ""  # the text key the user was told, when the answer failed

    @property
    def task_id(self) -> str:
        return self._stream.task_id if self._stream is not None else ""

    async def ask(self, conversation_id: str | None) -> Outcome:
        """Stream one answer. ConversationNotFound propagates so the caller can retry fresh;
        Unanswerable (from the prepare step) propagates for the caller to tell the user."""
        if self._prepared is None:  # once: a fresh retry reuses the uploads
            self._prepared = await self._prepare(self.message, self.dify)
            for line in self._prepared.notes:  # e.g. a file left out: said above the answer
                self.reply.note(line)
        request = AnswerRequest(
            query=self._prepared.query,
            user=self.message.dify_user,
            conversation_id=conversation_id,
            inputs=self._prepared.inputs,
            files=self._prepared.files,
            trace_id=self.trace_id,
        )
        return await self._consume(self.dify.stream(request))

    async def follow(
        self,
        run_id: str,
        *,
        shown: str,
        subscribed: AnswerStream | None = None,
        answered: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Follow a run that already started (resumed after a form, or cut off): its events
        from a snapshot of the run so far, never rewinding ``shown``; or, ``subscribed``
        before a form's submit, its events from then on (nothing published is missed).

        ``answered``: tokens of forms already submitted. Until Dify's worker picks the resume
        up (tens of ms), a snapshot still shows the run paused on them
        (benchmarks/hitl_submit_race: 12 of 20 at +50 ms); the stream is then read on past
        that stale pause (``continue_on_pause``) instead of showing the form again."""
        self.workflow_run_id = run_id
        self._answered = answered
        if subscribed is not None:
            return await self._consume(_closing(subscribed))
        opened = self.dify.run_events(
            run_id, user=self.message.dify_user, snapshot=True, shown=shown,
            continue_on_pause=bool(answered),
        )  # fmt: skip
        return await self._consume(opened)

    @property
    def resumable(self) -> bool:
        return self.dify.mode in RESUMABLE

    async def _consume(self, opened: AbstractAsyncContextManager[AnswerStream]) -> Outcome:
        end: AnswerEnd | None = None
        try:
            async with opened as stream:
                self._stream = stream
                async for event in stream:
                    if isinstance(event, AnswerEnd) and event.paused and self._answered:
                        if all(form.token in self._answered for form in event.forms):
                            continue  # a stale pause: the resume is on its way
                        end = event
                        break  # a new form (continue_on_pause would read on forever)
                    end = self._apply(event) or end
                    if stream.conversation_id and not self.conversation_id:
                        await self._conversation_known(stream.conversation_id)
                    if stream.workflow_run_id and not self.workflow_run_id:
                        self.workflow_run_id = stream.workflow_run_id
                    if self.workflow_run_id and self._run_saved is None:
                        await self.keep_shown(self.reply.text)
        except (ConversationNotFound, RunNotFound):
            raise
        except DifyStreamCut as exc:
            if not self.workflow_run_id or not self.resumable or self.reattaches >= REATTACHES:
                return await self._failed(exc)
            # Dify runs a Chatflow/Workflow in a worker: a dropped connection leaves it going.
            self.reattaches += 1
            log.info("stream cut; reattaching to run %s trace=%s", self.workflow_run_id,
                     self.trace_id)  # fmt: skip
            try:
                return await self.follow(
                    self.workflow_run_id, shown=self.reply.text, answered=self._answered
                )
            except RunNotFound:  # Dify no longer has it: the answer was cut, as before
                return await self._failed(exc)
        except DifyError as exc:
            return await self._failed(exc)
        return await self._conclude(end)

    async def keep_shown(self, text: str) -> None:
        """Keep the run and the text about to be shown for whoever answers next (a replica
        taking over): once the run is named, then before each visible edit (``ProgressiveReply
        .before_edit``), so what a taker shows never falls behind the screen."""
        run = self.workflow_run_id
        if self._on_run is None or not run or not self.resumable or self._run_saved == (run, text):
            return
        self._run_saved = (run, text)
        with best_effort("keep the run followed (a taker would ask again)", log):
            await self._on_run({"id": run, "shown": text})

    async def _conversation_known(self, conversation_id: str) -> None:
        """Keep the conversation as soon as Dify names it, not at the end: an answer cut short,
        or finished by another replica after this one died, must continue the same one."""
        self.conversation_id = conversation_id
        if self._on_conversation is not None:
            await self._on_conversation(self)

    def _text_arrived(self) -> None:
        self.chunks += 1
        if self.first_text_at is None:
            self.first_text_at = self._clock()
        if self._thinking:  # the answer itself has begun: thinking is over
            self._thinking, self._sticky = False, ""
            self.reply.set_status("")

    def _apply(self, event: AnswerEvent) -> AnswerEnd | None:
        reply = self.reply
        if isinstance(event, TextDelta):  # by far the most frequent event: tested first
            self._text_arrived()
            reply.add(event.text)
        elif isinstance(event, TextReplace):
            self._text_arrived()
            reply.replace(event.text)
        elif isinstance(event, AgentThought):
            tool = f"🔧 {event.tool}…" if event.tool and not event.observation else ""
            reply.set_status(tool or self._sticky)
        elif isinstance(event, Progress):
            reply.set_status(_progress_status(event) or self._sticky)
        elif isinstance(event, FileOut):
            self._files_out.append(event)
        elif isinstance(event, AnswerEnd):
            return event
        elif isinstance(event, Reasoning):
            self._reasoned(event)
        elif isinstance(event, FormFilled):  # stays up while the run goes on
            status = self.texts.get("form_filled", self._locale)
            self._sticky = status.format(title=event.node_title, action=event.action_text)
            reply.set_status(self._sticky)
        elif isinstance(event, FormTimedOut):
            status = self.texts.get("form_timed_out", self._locale)
            self._sticky = status.format(title=event.node_title)
            reply.set_status(self._sticky)
        # human_input_required: the paused end carries its forms.
        return None

    def _reasoned(self, event: Reasoning) -> None:
        """A "thinking…" status while the model reasons; the reasoning itself (its last line)
        only when the setting asks. It never joins the answer."""
        self.reasoning += event.text
        if event.final and not self._thinking:
            return
        status = self.texts.get("thinking", self._locale)
        if self._show_reasoning and self.reasoning.strip():
            status = f"{status} {self.reasoning.strip().splitlines()[-1][-200:]}"
        self._thinking, self._sticky = True, status  # until the answer's text begins
        self.reply.set_status(status)

    async def _conclude(self, end: AnswerEnd | None) -> Outcome:
        if end is None:  # the connection closed without a closing event
            log.warning("stream ended without a closing event trace=%s", self.trace_id)
            await self.tell_failure("interrupted")
            return Outcome.INTERRUPTED
        if end.status == "stopped":
            await self.tell_failure("stopped")
            return Outcome.STOPPED
        if end.status == "paused" and self._on_pause is not None:
            return await self._on_pause(self, end)
        if end.status != "succeeded":
            log.warning("run %s trace=%s error=%r", end.status, self.trace_id, end.error)
            await self.tell_failure("paused" if end.status == "paused" else "error")
            return Outcome.FAILED
        text = self.reply.text or text_from_outputs(end.outputs)
        text = text or self.texts.get("empty", self._locale)
        await self.reply.finish(self._answer(end), text=text)
        return Outcome.ANSWERED

    def paused_answer(self, end: AnswerEnd) -> Answer:
        """What a reply's ``finish`` gets when a form ends the text for now."""
        return self._answer(end)

    def _answer(self, end: AnswerEnd) -> Answer:
        files = {f.url: f for f in (*self._files_out, *end.files)}
        return Answer(
            message_id=end.message_id or (self._stream.message_id if self._stream else ""),
            conversation_id=end.conversation_id or self.conversation_id,
            task_id=self.task_id,
            dify_user=self.message.dify_user,
            usage=end.usage,
            retriever_resources=end.retriever_resources,
            files=tuple(files.values()),
            trace_id=self.trace_id,
            app=self.message.key.app,
        )

    async def failed(self, exc: DifyError) -> Outcome:
        """Tell the user ``exc`` in one sentence (logged with the details)."""
        return await self._failed(exc)

    async def _failed(self, exc: DifyError) -> Outcome:
        key = _text_key(exc)
        level = logging.ERROR if isinstance(exc, DifyAuthError) else logging.WARNING
        log.log(
            level,
            "dify error trace=%s type=%s status=%s code=%s: %s",
            self.trace_id, type(exc).__name__, exc.status, exc.code, exc.message,
        )  # fmt: skip
        await self.tell_failure(key)
        return Outcome.INTERRUPTED if key == "interrupted" else Outcome.FAILED

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started_at

    async def tell_interrupted(self) -> None:
        """Best effort, briefly: the task is being cancelled."""
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(2.0):
                await self.tell_failure("interrupted")

    async def tell_failure(self, key: str) -> None:
        self.failure = key
        await self.reply.fail(self.texts.get(key, self._locale))

    @property
    def _locale(self) -> str | None:
        return self.message.locale


@contextlib.asynccontextmanager
async def _closing(stream: AnswerStream) -> AsyncIterator[AnswerStream]:
    try:
        yield stream
    finally:
        await stream.close()


def _text_key(exc: DifyError) -> str:
    if isinstance(exc, DifyRateLimited):
        return "busy"
    if isinstance(exc, DifyQuotaExceeded) or exc.code in _QUOTA_CODES:
        return "quota"
    if isinstance(exc, DifyUnavailable):
        return "unavailable"
    if isinstance(exc, DifyStreamCut):
        return "interrupted"
    if isinstance(exc, DifyStreamError):
        return "error"
    return "error"


def _progress_status(event: Progress) -> str:
    if event.kind == "node" and event.status == "started" and event.node_type not in _QUIET_NODES:
        return f"{event.title or event.node_type}…"
    return ""


def text_from_outputs(outputs: dict[str, Any]) -> str:
    """A workflow app's answer when it streamed no text: the obvious output, else all of them."""
    for name in ("answer", "text", "result", "output"):
        value = outputs.get(name)
        if isinstance(value, str) and value:
            return value
    strings = [v for v in outputs.values() if isinstance(v, str) and v]
    if len(strings) == 1:
        return strings[0]
    return orjson.dumps(outputs, option=orjson.OPT_INDENT_2).decode() if outputs else ""

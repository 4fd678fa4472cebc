"""``SlackReply``: one answer in Slack, streamed natively or by throttled ``chat.update`` edits.

Native streaming is tried first where it can work (a thread, the setting on); any refusal falls
back to a placeholder post edited in place. Long answers continue in follow-up messages in the
same thread, split at paragraph boundaries (never inside a code fence) by ``bot.text.split_text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from adapters.slack.blocks import (
    Block,
    Labels,
    body_blocks,
    fallback_text,
    feedback_block,
    interim_text,
    sources_block,
    status_block,
    stop_block,
    suggestion_blocks,
)
from adapters.slack.files import post_answer_files
from adapters.slack.forms import form_blocks
from adapters.slack.native import NativeStream, StreamTarget
from adapters.slack.sender import POST, BadBlocks, SlackSender, TooLong, slack_error
from bot.contract import FormView, ReplyCapabilities
from bot.delivery.scheduler import Priority
from bot.files.answers import AnswerFiles, AnswerUploads
from bot.models import Answer
from bot.ops.effort import best_effort
from bot.text import split_text

log = logging.getLogger(__name__)

Suggest = Callable[[Answer], Awaitable[list[str]]]
SaveState = Callable[[dict[str, Any]], Awaitable[None]]
_MIN_LIMIT = 2_000
STATUS = "assistant.threads.setStatus"


class SlackReply:
    """Implements ``bot.contract.Reply`` for Slack."""

    def __init__(
        self,
        sender: SlackSender,
        place: Place,
        *,
        labels: Labels,
        options: ReplyOptions,
        suggest: Suggest | None = None,
        resume: list[str] | None = None,
        files: AnswerFiles | None = None,
        save: SaveState | None = None,
    ) -> None:
        self.capabilities = ReplyCapabilities(
            can_edit=True, max_length=options.message_limit, min_interval=options.min_interval
        )
        self._sender = sender
        self._client = sender.client
        self._place = place
        self._labels = labels
        self._options = options
        self._suggest = suggest
        self._files = files
        self._limit = options.message_limit
        self._markdown = options.markdown_blocks
        self._state = ShownState(messages=[PostedMessage(ts) for ts in resume or ()])
        self._stream: NativeStream | None = None
        # Posted messages are saved in the journal, so another replica that takes this answer
        # over edits them instead of posting a second answer.
        self._save = save
        self._saved: list[str] = list(resume or ())
        # The placeholder is posted in the background, when the workspace's budget lets it: an
        # answer ready before then is posted directly and the placeholder never is.
        self._placeholder: asyncio.Task[None] | None = None
        self._posting = False  # the placeholder's chat.postMessage is on its way

    async def _save_state(self) -> None:
        posted = [message.ts for message in self._state.messages]
        if self._save is None or posted == self._saved:
            return
        self._saved = posted
        with best_effort("save the reply's state (a taker would post anew)", log):
            await self._save({"messages": posted})

    async def start(self) -> None:
        place = self._place
        if self._state.messages:  # resumed from a replica that died: edit what it posted
            return
        status = bool(place.thread_ts) and await self._set_status(self._labels.thinking)
        if place.thread_ts and self._options.native_streaming:
            target = StreamTarget(place.channel, place.thread_ts, place.team, place.user)
            stream = NativeStream(self._sender, target, limit=self._limit)
            try:
                if await stream.open():  # else no stream fits the workspace's budget now
                    self._stream = stream
                    if stream.ts:
                        self._state.messages.append(PostedMessage(stream.ts))
                        await self._save_state()
                    return
            except SlackApiError as exc:
                log.info("native streaming unavailable (%s); editing a message", slack_error(exc))
                self._adopt(stream)
        if self._state.messages or status:
            # A thread's "thinking…" status is its sign of life: no placeholder post, whose
            # channel allows ~1 post a second (the answer's first text posts the message).
            return
        budget, channel = self._sender.budget, place.channel
        if await budget.now(POST, priority=Priority.SIGN_OF_LIFE, channel=channel):
            await self._post_placeholder()
        else:  # posts are short: post it when it can, unless the answer is ready first
            self._placeholder = asyncio.create_task(self._sign_of_life())

    async def _sign_of_life(self) -> None:
        """Post the "thinking…" placeholder once its slot comes (cancelled, before the post
        goes, when the answer is ready first)."""
        await self._sender.slot(POST, self._place.channel, priority=Priority.SIGN_OF_LIFE)
        await self._post_placeholder()

    async def _post_placeholder(self) -> None:
        """The placeholder's slot is taken: post it."""
        place = self._place
        self._posting = True
        blocks = [status_block(self._labels.thinking), *self._stop()]
        with best_effort("post the placeholder (the answer is posted anyway)", log):
            ts = await self._sender.post(
                place.channel, place.thread_ts, blocks, self._labels.thinking, paid=True
            )
            self._state.messages.append(PostedMessage(ts))
            await self._save_state()

    async def _settle_placeholder(self, *, final: bool) -> bool:
        """Whether the reply may render now: the placeholder is posted (or failed), or, for
        the final answer, dropped because it had not gone yet."""
        task = self._placeholder
        if task is None or task.done():
            return True
        if not final:
            return False  # interim text waits for the sign of life; the final shows it all
        if not self._posting:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def update(self, text: str) -> None:
        self._state.text = text
        if self._stream is not None:
            if await self._stream.show(text):
                return
            await self._leave_stream()
        if await self._settle_placeholder(final=False):
            await self._render_fitting(text, final=False)

    async def status(self, text: str) -> None:
        self._state.status = text
        if self._stream is not None:
            await self._set_status(text)
        elif (
            self._state.messages
            and text
            and self._state.text
            and await self._settle_placeholder(final=False)
        ):
            # (Not before the text is known: a reply rebuilt to go on after a form would
            # otherwise show the status alone over the answer.)
            await self._render_fitting(self._state.text, final=False)
        # A cleared status costs no edit of its own (chat.update is rate-limited): the next
        # text edit, or the final answer that comes right after, shows the message without it.

    async def finish(self, text: str, answer: Answer) -> None:
        # Dify's file URLs expire in minutes: fetch first, then show the text without them.
        files = await AnswerUploads.fetch(self._files, text, answer) if self._files else None
        await self._final(files.text if files else text, self._footer(answer))
        if files is not None:
            await post_answer_files(files, self._client, self._place.channel, self._place.thread_ts)
        if self._suggest is not None and answer.message_id:
            await self._offer_suggestions(answer)

    async def fail(self, text: str, notice: str) -> None:
        await self._final(f"{text}\n\n_{notice}_" if text.strip() else f"_{notice}_", [])

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the answer so far, the form's text, one button per
        action (``adapters.slack.forms``); the resumed run edits this same message."""
        shown = "\n\n".join(part for part in (text, form.text) if part.strip())
        await self._final(shown, form_blocks(form))

    # ---- rendering ------------------------------------------------------------------------

    async def _final(self, text: str, footer: list[Block]) -> None:
        try:
            await self._settle_placeholder(final=True)
            await self._deliver(text, footer)
        finally:
            self._sender.done()

    async def _deliver(self, text: str, footer: list[Block]) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            if await stream.close(text, footer):
                return
            self._adopt(stream)
        try:
            delivered = await self._render_fitting(text, final=True, footer=footer)
        except SlackApiError as exc:  # e.g. the bot was removed from the channel meanwhile
            log.error("final answer refused in %s: %s", self._place.channel, slack_error(exc))
            return
        if not delivered:
            log.error("could not deliver a final answer to %s", self._place.channel)

    async def _render_fitting(
        self, text: str, *, final: bool, footer: list[Block] | None = None
    ) -> bool:
        """Render; when Slack finds it too long or rejects the blocks, ``_show`` has already
        made the parts smaller or switched to mrkdwn, so render again."""
        for _ in range(4):
            try:
                await self._render(text, final=final, footer=footer)
                return True
            except (TooLong, BadBlocks):
                continue
        return False

    async def _render(self, text: str, *, final: bool, footer: list[Block] | None = None) -> None:
        parts = split_text(text, self._limit) if text.strip() else [""]
        messages = self._state.messages
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            blocks = body_blocks(part, markdown_blocks=self._markdown)
            if last and not final:
                blocks += [status_block(self._state.status)] if self._state.status else []
                blocks += self._stop()
            if last and final:
                blocks += footer or []
            blocks = blocks or [status_block(self._labels.thinking)]
            shown = json.dumps(blocks, ensure_ascii=False)
            if index < len(messages) and messages[index].shown == shown:
                continue
            fallback = (fallback_text if final else interim_text)(part) or self._labels.thinking
            await self._show(index, blocks, fallback, final, shown, alone=len(parts) == 1)

    async def _show(
        self, index: int, blocks: list[Block], text: str, final: bool, shown: str, *, alone: bool
    ) -> None:
        messages, place, sender = self._state.messages, self._place, self._sender
        try:
            if index >= len(messages):
                # An interim part is posted only if a post may go now: interim work never
                # waits (the final answer would wait behind it).
                if not final and not await sender.budget.now(POST, channel=place.channel):
                    return
                thread = self._thread(index)
                ts = await sender.post(place.channel, thread, blocks, text, paid=not final)
                messages.append(PostedMessage(ts, shown))
                await self._save_state()
            elif final:
                ts = messages[index].ts
                new = await sender.edit_final(
                    place.channel,
                    ts,
                    blocks,
                    text,
                    thread_ts=self._thread(index),
                    alone=alone and len(messages) == 1,
                )
                messages[index] = PostedMessage(new, shown)
            elif await sender.edit_interim(place.channel, messages[index].ts, blocks, text):
                messages[index].shown = shown
        except BadBlocks:
            self._markdown = False
            raise
        except TooLong:
            self._limit = max(self._limit // 2, _MIN_LIMIT)
            raise

    def _thread(self, index: int) -> str | None:
        """Follow-ups of a top-level DM answer go under its first part, so it reads as one."""
        if index == 0 or self._place.thread_ts or not self._state.messages:
            return self._place.thread_ts
        return self._state.messages[0].ts

    # ---- pieces ---------------------------------------------------------------------------

    def _stop(self) -> list[Block]:
        value = self._place.stop_value
        return [stop_block(self._labels.stop, value)] if value else []

    def _footer(self, answer: Answer) -> list[Block]:
        blocks: list[Block] = []
        sources = sources_block(answer.retriever_resources, self._labels.sources)
        if sources is not None:
            blocks.append(sources)
        if self._options.feedback and answer.message_id and answer.dify_user:
            blocks.append(
                feedback_block(answer.message_id, answer.dify_user, self._labels, answer.app)
            )
        return blocks

    async def _offer_suggestions(self, answer: Answer) -> None:
        """Dify's suggested questions come from a separate (slow, LLM) call: a small message
        after the answer, so the answer itself is never held back for them."""
        assert self._suggest is not None
        with best_effort("offer suggested questions", log):
            questions = await self._suggest(answer)
            blocks = suggestion_blocks(questions, self._labels)
            if blocks:
                await self._sender.post(
                    self._place.channel,
                    self._place.thread_ts,
                    blocks,
                    self._labels.suggested,
                    priority=Priority.CLEANUP,  # after every answer's own messages
                )

    async def _set_status(self, text: str) -> bool:
        """``assistant.threads.setStatus``: the "is thinking…" line under a thread (best
        effort); whether Slack shows it."""
        channel = self._place.channel
        if not self._place.thread_ts or not await self._sender.budget.now(
            STATUS, priority=Priority.SIGN_OF_LIFE, channel=channel
        ):
            return False
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._place.channel, thread_ts=self._place.thread_ts, status=text
            )
        except SlackApiError as exc:
            log.debug("setStatus refused: %s", slack_error(exc))
            return False
        return True

    async def _leave_stream(self) -> None:
        """The stream cannot show the text (replaced, or Slack ended it): edit its message."""
        stream, self._stream = self._stream, None
        if stream is not None:
            if not stream.dead:
                await stream.close("", [])
            self._adopt(stream)

    def _adopt(self, stream: NativeStream) -> None:
        if stream.ts and not self._state.messages:
            self._state.messages.append(PostedMessage(stream.ts))


# ---- where an answer goes, how it may be shown, what it has shown so far ---------------------


@dataclass(frozen=True, slots=True)
class Place:
    """Where an answer goes and who asked: ``thread_ts`` None means top level (a plain DM)."""

    channel: str
    thread_ts: str | None
    team: str
    user: str
    stop_value: str = ""


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    native_streaming: bool = True
    markdown_blocks: bool = True
    feedback: bool = True
    message_limit: int = 12_000  # markdown blocks hold 12,000 characters per message
    min_interval: float = 1.0


@dataclass(slots=True)
class PostedMessage:
    ts: str
    shown: str = ""


@dataclass(slots=True)
class ShownState:
    messages: list[PostedMessage] = field(default_factory=list)
    status: str = ""
    text: str = ""

"""Slack's native streaming (chat.startStream / appendStream / stopStream) for one answer.

Built on slack-sdk's ``chat_stream`` helper. A stream needs a thread ("streamed messages should
always be replies"), ``recipient_*`` ids outside DMs, and Slack finalizes it server-side after
about 5 minutes (``message_not_in_streaming_state``): any refusal marks the stream dead and the
reply carries on with ``chat.update`` on the same message (``ts``), which also fixes the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream

from adapters.slack.blocks import Block
from adapters.slack.sender import SlackSender, retry_after, slack_error
from bot.delivery.scheduler import Priority

log = logging.getLogger(__name__)

MARKDOWN_LIMIT = 12_000  # markdown_text per call, and what we let one streamed message hold


@dataclass(frozen=True, slots=True)
class StreamTarget:
    channel: str
    thread_ts: str
    team: str
    user: str


class NativeStream:
    """Appends what is new in the whole text; refuses (returns False) what it cannot show."""

    def __init__(self, sender: SlackSender, target: StreamTarget, *, limit: int) -> None:
        self._sender = sender
        self._budget = sender.budget
        self._target = target
        self._limit = min(limit, MARKDOWN_LIMIT)
        self._stream: AsyncChatStream | None = None
        self._given = ""  # text handed to the helper (sent, or buffered after a 429)
        self.dead = False

    @property
    def ts(self) -> str | None:
        return self._stream.ts if self._stream is not None else None

    async def open(self) -> bool:
        """Start the stream now (the sign of life); False when the workspace cannot afford one
        more stream now; raises SlackApiError if Slack refuses."""
        if not await self._budget.now("chat.startStream", priority=Priority.STREAM):
            return False
        await self._start(self._target)
        return True

    async def _start(self, t: StreamTarget) -> None:
        self._stream = await self._sender.client.chat_stream(
            channel=t.channel,
            thread_ts=t.thread_ts,
            recipient_team_id=t.team,
            recipient_user_id=t.user,
            buffer_size=1,
        )
        await self._stream.append(chunks=[])  # flush nothing: chat.startStream right away

    async def show(self, text: str) -> bool:
        """Append the new part of ``text``; False when the stream cannot carry it."""
        if self._stream is None or self.dead or not text.startswith(self._given):
            return False
        if len(text) > self._limit:
            return True  # the rest arrives in follow-up messages at the end
        delta = text[len(self._given) :]
        if not delta or not await self._budget.now("chat.appendStream", turn_of=self._sender):
            return True  # not now: the next append carries this part too
        try:
            self._given = text
            await self._stream.append(markdown_text=delta)
        except SlackApiError as exc:
            if (pause := retry_after(exc)) is not None:
                await self._budget.block("chat.appendStream", pause)
                return True  # the helper keeps the text buffered; the next append sends it
            self._died(exc)
            return False
        return True

    async def close(self, text: str, blocks: list[Block]) -> bool:
        """Finish with the whole ``text`` and ``blocks`` below it; False if the caller must
        render the message itself (text replaced or too long, or the stream died)."""
        if self._stream is None or self.dead:
            return False
        whole = text.startswith(self._given) and len(text) <= self._limit
        # The stop carries the final answer: it waits for its slot ahead of everything else.
        await self._budget.slot("chat.stopStream", priority=Priority.FINAL)
        try:
            if whole:
                await self._stream.stop(markdown_text=text[len(self._given) :], blocks=blocks)
                return True
            await self._stream.stop()
        except SlackApiError as exc:
            if (pause := retry_after(exc)) is not None:
                await self._budget.block("chat.stopStream", pause)
            self._died(exc)
        return False

    def _died(self, exc: SlackApiError) -> None:
        self.dead = True
        log.info("native stream ended by Slack (%s); continuing with chat.update", slack_error(exc))

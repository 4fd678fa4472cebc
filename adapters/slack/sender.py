"""Posting and editing one message with Slack's limits: budgeted edits, 429s, final delivery.

Errors (``slack_sdk.errors.SlackApiError`` at the edge) come out as:
- ``TooLong``: ``msg_too_long`` — the caller splits smaller and renders again;
- ``BadBlocks``: ``invalid_blocks`` — the caller drops ``markdown`` blocks for mrkdwn;
- anything else from ``post`` propagates (``channel_not_found`` and friends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Block
from adapters.slack.budget import EditBudget

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class TooLong(Exception):
    """Slack refused the message as too long (``msg_too_long``)."""


class BadBlocks(Exception):
    """Slack refused the blocks (``invalid_blocks``), e.g. no ``markdown`` block support."""


def slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "") if exc.response is not None else ""


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds from Retry-After when this is a 429, else None."""
    response = exc.response
    if response is None or response.status_code != 429:
        return None
    for name, value in dict(response.headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            with contextlib.suppress(ValueError):
                return max(float(raw), 0.0)
    return 1.0


class SlackSender:
    """Sends one reply's messages. Interim edits never wait on a 429 and are never queued; the
    final edit waits out Retry-After (bounded), and is posted fresh if editing keeps failing."""

    def __init__(
        self,
        client: AsyncWebClient,
        budget: EditBudget,
        *,
        sleep: Sleep = asyncio.sleep,
        max_interim_wait: float = 3.0,
        final_attempts: int = 3,
    ) -> None:
        self.client = client
        self.budget = budget
        self._sleep = sleep
        self._max_interim_wait = max_interim_wait
        self._final_attempts = final_attempts

    async def post(
        self, channel: str, thread_ts: str | None, blocks: list[Block], text: str
    ) -> str:
        """A new message; its ``ts``. chat.postMessage is ~1/s per channel: honour a 429."""
        for attempt in range(self._final_attempts):
            try:
                response = await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, blocks=blocks, text=text
                )
                return str(response["ts"])
            except SlackApiError as exc:
                wait = retry_after(exc)
                if wait is None or attempt == self._final_attempts - 1:
                    raise _translated(exc) from exc
                await self._sleep(wait)
        raise AssertionError("unreachable")

    async def edit_interim(self, channel: str, ts: str, blocks: list[Block], text: str) -> bool:
        """An interim edit within the workspace budget; False when skipped or refused."""
        wait = self.budget.reserve(self._max_interim_wait)
        if wait is None:
            return False
        if wait > 0:
            await self._sleep(wait)
        try:
            await self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            pause = retry_after(exc)
            if pause is not None:
                self.budget.block(pause)
                log.info("chat.update rate limited; interim edits paused %.0f s", pause)
                return False
            translated = _translated(exc)
            if translated is not exc:
                raise translated from exc
            log.warning("interim edit refused: %s", slack_error(exc))
            return False
        return True

    async def edit_final(
        self, channel: str, ts: str, blocks: list[Block], text: str, *, thread_ts: str | None
    ) -> str:
        """The final content of message ``ts``; returns the ts that now shows it."""
        for _ in range(self._final_attempts):
            if (blocked := self.budget.blocked_for()) > 0:
                await self._sleep(blocked)
            self.budget.charge()
            try:
                await self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
                return ts
            except SlackApiError as exc:
                pause = retry_after(exc)
                if pause is None:
                    translated = _translated(exc)
                    if translated is not exc:
                        raise translated from exc
                    log.warning("final edit refused (%s); posting anew", slack_error(exc))
                    break
                self.budget.block(pause)
        fresh = await self.post(channel, thread_ts, blocks, text)
        await self._forget(channel, ts)
        return fresh

    async def _forget(self, channel: str, ts: str) -> None:
        """The stale message would show a half answer and a Stop button: try to delete it."""
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as exc:
            log.info("could not delete a superseded message: %s", slack_error(exc))


def _translated(exc: SlackApiError) -> Exception:
    error = slack_error(exc)
    if error == "msg_too_long":
        return TooLong(error)
    if error == "invalid_blocks":
        return BadBlocks(error)
    return exc

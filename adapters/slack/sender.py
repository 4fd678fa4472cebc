"""Posting and editing one reply's messages within Slack's limits: budgets, 429s, final delivery.

Errors (``slack_sdk.errors.SlackApiError`` at the edge) come out as:
- ``TooLong``: ``msg_too_long`` — the caller splits smaller and renders again;
- ``BadBlocks``: ``invalid_blocks`` — the caller drops ``markdown`` blocks for mrkdwn;
- anything else from ``post`` propagates (``channel_not_found`` and friends).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Block
from adapters.slack.budget import retry_after
from bot.delivery.scheduler import Account, Priority

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Later = Callable[[Coroutine[Any, Any, None]], object]  # runs work after the answer, tracked
POST = "chat.postMessage"
# Seconds a final edit may wait for a chat.update slot before the answer is posted anew instead
# (and the old message deleted later): 100 replies ending together in one workspace would
# otherwise wait up to two minutes for Tier 3's ~50 edits per minute.
FINAL_EDIT_WAIT = 5.0
__all__ = ["POST", "BadBlocks", "SlackSender", "TooLong", "retry_after", "slack_error"]


class TooLong(Exception):
    """Slack refused the message as too long (``msg_too_long``)."""


class BadBlocks(Exception):
    """Slack refused the blocks (``invalid_blocks``), e.g. no ``markdown`` block support."""


def slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "") if exc.response is not None else ""


class SlackSender:
    """Sends one reply's messages through the workspace's scheduler (``budget``). Interim edits
    never wait and are never queued; posts and the final edit wait for their slot (and out a
    429's Retry-After, on every replica), and the final is posted fresh when editing would keep
    it waiting."""

    def __init__(
        self,
        client: AsyncWebClient,
        budget: Account,
        *,
        sleep: Sleep = asyncio.sleep,
        later: Later | None = None,
        final_attempts: int = 3,
    ) -> None:
        self.client = client
        self.budget = budget
        self._sleep = sleep
        self._later = later
        self._final_attempts = final_attempts

    async def slot(self, method: str, channel: str = "", *, priority: Priority) -> None:
        """Until a ``method`` call (in ``channel``) fits the workspace's budget; it is taken."""
        await self.budget.slot(method, priority=priority, channel=channel)

    def done(self) -> None:
        """The reply has ended: its turns of interim calls go to the others."""
        self.budget.done(self)

    async def post(
        self,
        channel: str,
        thread_ts: str | None,
        blocks: list[Block],
        text: str,
        *,
        priority: Priority = Priority.FINAL,
        paid: bool = False,
    ) -> str:
        """A new message; its ``ts``. ``paid``: its slot is already taken."""
        for attempt in range(self._final_attempts):
            if not paid or attempt:
                await self.slot(POST, channel, priority=priority)
            try:
                response = await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, blocks=blocks, text=text
                )
                return str(response["ts"])
            except SlackApiError as exc:
                wait = retry_after(exc)
                if wait is None or attempt == self._final_attempts - 1:
                    raise _translated(exc) from exc
                await self.budget.block(POST, wait, channel=channel)
        raise AssertionError("unreachable")

    async def edit_interim(self, channel: str, ts: str, blocks: list[Block], text: str) -> bool:
        """An interim edit within the workspace budget; False when skipped or refused."""
        if not await self.budget.now("chat.update", turn_of=self):
            return False
        try:
            await self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)
        except SlackApiError as exc:
            pause = retry_after(exc)
            if pause is not None:
                await self.budget.block("chat.update", pause)
                return False
            translated = _translated(exc)
            if translated is not exc:
                raise translated from exc
            log.warning("interim edit refused: %s", slack_error(exc))
            return False
        return True

    async def edit_final(
        self,
        channel: str,
        ts: str,
        blocks: list[Block],
        text: str,
        *,
        thread_ts: str | None,
        alone: bool = False,
    ) -> str:
        """The final content of message ``ts``; returns the ts that now shows it. An ``alone``
        message (the whole answer) is posted anew when the workspace's chat.update budget
        would hold it back more than ``FINAL_EDIT_WAIT`` seconds."""
        for _ in range(self._final_attempts):
            within = FINAL_EDIT_WAIT if alone else None
            if not await self.budget.slot("chat.update", priority=Priority.FINAL, within=within):
                log.debug("chat.update budget short: the final answer is posted anew")
                break
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
                await self.budget.block("chat.update", pause)
        fresh = await self.post(channel, thread_ts, blocks, text)
        forget = self._forget(channel, ts)
        if self._later is None:
            await forget
        else:  # it waits for a chat.delete slot behind everything else: the answer need not
            self._later(forget)
        return fresh

    async def _forget(self, channel: str, ts: str) -> None:
        """The stale message would show a half answer and a Stop button: try to delete it."""
        await self.slot("chat.delete", priority=Priority.CLEANUP)
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

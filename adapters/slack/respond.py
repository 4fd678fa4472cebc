"""A reply through a slash command's ``response_url``, for channels the bot is not in.

A response_url takes 5 posts in 30 minutes and returns no ``ts`` to edit, so streaming through
it is not possible (slack.md §6): one "thinking" note, then the whole answer at the end. The
journal keeps the URL (``where``), so a replica taking the answer over posts through it too,
without a second "thinking" note.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.context.respond.async_respond import AsyncRespond

from adapters.slack.blocks import Labels, asked_block, body_blocks, fallback_text, sources_block
from bot.contract import Delivery, ReplyCapabilities
from bot.models import Answer
from bot.text import split_text

log = logging.getLogger(__name__)

_MAX_PARTS = 3  # of the 5 uses: one "thinking" note, at most three answer parts, one spare


class RespondReply:
    """Implements ``bot.contract.Reply`` over ``respond()`` (no edits)."""

    def __init__(
        self,
        respond: AsyncRespond,
        *,
        user: str,
        question: str,
        labels: Labels,
        limit: int,
        started: bool = False,
        save: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.capabilities = ReplyCapabilities(can_edit=False, max_length=limit)
        self._respond = respond
        self._user = user
        self._question = question
        self._labels = labels
        self._limit = limit
        self._started = started
        self._save = save

    @classmethod
    def restore(
        cls, where: Mapping[str, Any], delivery: Delivery, *, labels: Labels, limit: int
    ) -> RespondReply:
        """From the journal: ``where`` holds the response_url, the asker and the question."""
        return cls(
            AsyncRespond(response_url=str(where["response_url"])),
            user=str(where["user"]),
            question=str(where["question"]),
            labels=labels,
            limit=limit,
            started=bool((delivery.state or {}).get("started")),
            save=delivery.save,
        )

    async def start(self) -> None:
        if self._started:  # taken over: the note is there already (and a use of the URL spent)
            return
        await self._respond(text=f"_{self._labels.thinking}_", response_type="ephemeral")
        if self._save is not None:
            await self._save({"started": True})

    async def update(self, text: str) -> None:
        """Never called: ``can_edit`` is False."""

    async def status(self, text: str) -> None:
        """No place to show it without using up the response_url."""

    async def finish(self, text: str, answer: Answer) -> None:
        sources = sources_block(answer.retriever_resources, self._labels.sources)
        await self._send(text, [sources] if sources else [])

    async def fail(self, text: str, notice: str) -> None:
        await self._send(f"{text}\n\n_{notice}_" if text.strip() else f"_{notice}_", [])

    async def _send(self, text: str, footer: list[dict[str, Any]]) -> None:
        parts = split_text(text, self._limit)[:_MAX_PARTS]
        for index, part in enumerate(parts):
            blocks = body_blocks(part, markdown_blocks=True)
            if index == 0:
                blocks.insert(0, asked_block(self._user, self._question))
            if index == len(parts) - 1:
                blocks += footer
            response = await self._respond(
                text=fallback_text(part), blocks=blocks, response_type="in_channel"
            )
            if response.status_code != 200:
                log.warning("response_url refused the answer: %s", response.status_code)

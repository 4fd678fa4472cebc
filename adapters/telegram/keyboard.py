"""Inline keyboards under answers and the typed actions their buttons carry.

A button's ``callback_data`` is at most 64 bytes (Bot API), too small for a Dify message id, its
user and app, or a suggested question; so the data names an action and a slot (``fb:like``,
``ask:2``) and what the action needs is remembered per message in a store every replica shares
(``AnswerMemory`` over the followed-threads table). A Dify human-input form's buttons (issue 17)
are one more ``Action`` kind decoded here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.stores import FollowedThreads

LIKE, DISLIKE, ASK = "fb:like", "fb:dislike", "ask"
MEMORY_TTL = 30 * 24 * 3600.0  # feedback and suggestions stay pressable for a month
_MAX_VALUE = 255  # the store's column


@dataclass(frozen=True, slots=True)
class Action:
    """A decoded button press: ``kind`` is ``like``, ``dislike`` or ``ask`` (``slot``: which
    suggested question); ``unknown`` for data this version does not know."""

    kind: str
    slot: int = 0


def to_action(data: str) -> Action:
    if data == LIKE:
        return Action("like")
    if data == DISLIKE:
        return Action("dislike")
    prefix, _, slot = data.partition(":")
    if prefix == ASK and slot.isdigit():
        return Action("ask", int(slot))
    return Action("unknown")


Keyboard = dict[str, Any]


def answer_keyboard(
    *, labels: tuple[str, str] | None, questions: Sequence[str] = ()
) -> Keyboard | None:
    """Suggested questions one per row, then 👍/👎 (``labels`` None: no feedback buttons)."""
    rows: list[list[dict[str, str]]] = [
        [{"text": _button_text(q), "callback_data": f"{ASK}:{i}"}] for i, q in enumerate(questions)
    ]
    if labels is not None:
        rows.append(
            [
                {"text": labels[0], "callback_data": LIKE},
                {"text": labels[1], "callback_data": DISLIKE},
            ]
        )
    return {"inline_keyboard": rows} if rows else None


def _button_text(question: str) -> str:
    return question if len(question) <= 60 else question[:59] + "…"


class AnswerMemory:
    """What an answer's buttons need, by (chat, message): shared by every replica."""

    def __init__(self, store: FollowedThreads, *, bot_id: int, ttl: float = MEMORY_TTL) -> None:
        self._store = store
        self.bot_id = bot_id
        self._ttl = ttl

    def _key(self, chat: int, message: int, what: str) -> str:
        return f"telegram/{self.bot_id}/{chat}/{message}/{what}"

    async def remember_answer(
        self, chat: int, message: int, *, message_id: str, user: str, app: str
    ) -> None:
        value = json.dumps({"m": message_id, "u": user, "a": app}, separators=(",", ":"))
        if len(value) <= _MAX_VALUE:
            await self._store.follow(self._key(chat, message, "answer"), value, ttl=self._ttl)

    async def answer(self, chat: int, message: int) -> tuple[str, str, str] | None:
        """(Dify message id, Dify user, app) of the answer shown in that message."""
        raw = await self._store.owner(self._key(chat, message, "answer"))
        if raw is None:
            return None
        value = json.loads(raw)
        return str(value["m"]), str(value["u"]), str(value["a"])

    async def remember_questions(self, chat: int, message: int, questions: list[str]) -> None:
        for slot, question in enumerate(questions):
            key = self._key(chat, message, f"ask{slot}")
            await self._store.follow(key, question[:_MAX_VALUE], ttl=self._ttl)

    async def question(self, chat: int, message: int, slot: int) -> str | None:
        return await self._store.owner(self._key(chat, message, f"ask{slot}"))

    async def remember_root(self, chat: int, message: int, root: int) -> None:
        """A message belongs to the reply chain that started at ``root`` (group threads)."""
        await self._store.follow(self._key(chat, message, "root"), str(root), ttl=self._ttl)

    async def root(self, chat: int, message: int) -> int | None:
        raw = await self._store.owner(self._key(chat, message, "root"))
        return int(raw) if raw is not None and raw.lstrip("-").isdigit() else None

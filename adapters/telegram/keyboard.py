"""Inline keyboards under answers and the typed actions their buttons carry.

A button's ``callback_data`` is at most 64 bytes (Bot API), too small for a Dify message id, its
user and app, or a suggested question; so the data names an action and a slot (``fb:like``,
``ask:2``) and what the action needs is remembered per message in a store every replica shares
(``AnswerMemory`` over the followed-threads table). A Dify human-input form's buttons carry all
they need: ``form:<ref>:<n>`` (the core's form ref, 16 characters, and the action's index), so a
press works on any replica with nothing remembered; ``form:-`` is the inert button that replaces
them once the form can no longer be answered (Telegram has no disabled buttons).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.contract import FormView
from bot.stores import FollowedThreads

LIKE, DISLIKE, ASK, FORM = "fb:like", "fb:dislike", "ask", "form"
CLOSED = f"{FORM}:-"
_MAX_DATA = 64  # callback_data, in bytes (Bot API)
MEMORY_TTL = 30 * 24 * 3600.0  # feedback and suggestions stay pressable for a month
_MAX_VALUE = 255  # the store's column


@dataclass(frozen=True, slots=True)
class Action:
    """A decoded button press: ``kind`` is ``like``, ``dislike``, ``ask`` (``slot``: which
    suggested question), ``form`` (``ref``: the form, ``slot``: which of its actions),
    ``closed`` (a form's inert button); ``unknown`` for data this version does not know."""

    kind: str
    slot: int = 0
    ref: str = ""


def to_action(data: str) -> Action:
    if data == LIKE:
        return Action("like")
    if data == DISLIKE:
        return Action("dislike")
    if data == CLOSED:
        return Action("closed")
    prefix, _, rest = data.partition(":")
    if prefix == ASK and rest.isdigit():
        return Action("ask", int(rest))
    ref, _, slot = rest.rpartition(":")
    if prefix == FORM and ref and slot.isdigit():
        return Action("form", int(slot), ref)
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


def form_keyboard(view: FormView) -> Keyboard | None:
    """One button per action of the form, one per row (titles can be long); None when the
    core's ref would not fit in a button's 64 bytes (it always does: 16 characters)."""
    rows = [
        [{"text": _button_text(a.title or a.id), "callback_data": f"{FORM}:{view.ref}:{i}"}]
        for i, a in enumerate(view.form.actions)
    ]
    if not rows or len(rows[-1][0]["callback_data"].encode()) > _MAX_DATA:
        return None
    return {"inline_keyboard": rows}


def closed_keyboard(notice: str) -> Keyboard:
    """The form's buttons replaced by one that only says why (pressing it tells the same)."""
    return {"inline_keyboard": [[{"text": _button_text(notice), "callback_data": CLOSED}]]}


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

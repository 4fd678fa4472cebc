"""What an answer offers next, and the user's pick: suggested questions (and, when on, a rating)
as a numbered text message after the answer, since robot messages have no buttons that call
back; a reply of just a number asks that question, 👍 / 👎 rate the answer in Dify.

The offer is kept in the answer's journal entry (its reply state), so the pick is understood on
any replica. Only the newest offer of a chat place counts, for ``OFFER_TTL`` seconds. A pick is
decoded into a typed ``Choice``: the one place where card button actions (suggestions, ratings
and Dify human-input form actions) turn into something the adapter does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.models import Answer
from bot.ops.effort import best_effort
from bot.stores import ReplyStates, State

log = logging.getLogger(__name__)

OFFER_TTL = 3600.0  # seconds a numbered offer stays answerable
_NUMBER = re.compile(r"^\s*(\d{1,2})\s*[.。、]?\s*$")
_RATINGS = {"👍": "like", "+1": "like", "👎": "dislike", "-1": "dislike"}
Suggest = Callable[[Answer], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Choice:
    """A user's pick: ``ask`` a question again, ``rate`` (``like``/``dislike``) an answer, or
    take a Dify form's action (``form``: ``value`` is the action's id, ``ref`` the form's)."""

    kind: Literal["ask", "rate", "form"]
    value: str
    app: str = "default"
    message_id: str = ""
    dify_user: str = ""
    ref: str = ""


def to_choice(offer: Any, text: str) -> Choice | None:
    """The pick ``text`` makes among ``offer`` (an answer's saved offer), if any."""
    if not isinstance(offer, dict):
        return None
    questions = [str(q) for q in offer.get("questions") or ()]
    number = _NUMBER.match(text)
    form = offer.get("form")
    if number and isinstance(form, dict) and form.get("ref"):
        actions = [str(a) for a in form.get("actions") or ()]
        if 1 <= int(number.group(1)) <= len(actions):
            return Choice("form", actions[int(number.group(1)) - 1], ref=str(form["ref"]))
        return None
    if number and 1 <= int(number.group(1)) <= len(questions):
        return Choice("ask", questions[int(number.group(1)) - 1])
    rating = _RATINGS.get(text.strip())
    if rating and offer.get("feedback") and offer.get("message_id"):
        return Choice("rate", rating, str(offer.get("app") or "default"),
                      str(offer["message_id"]), str(offer.get("dify_user") or ""))  # fmt: skip
    return None


async def find_choice(states: ReplyStates, place: str, text: str, *, since: float) -> Choice | None:
    """The pick ``text`` makes among the offer of the newest answer in ``place`` (since
    ``since``): an older offer no longer counts once another answer came after it."""
    if not (_NUMBER.match(text) or text.strip() in _RATINGS):
        return None  # most messages: no database look-up
    answered = [e.reply_state for e in await states.recent(place, since=since) if e.reply_state]
    return to_choice(answered[-1].get("offered"), text) if answered else None


FORM_ACTION = "form"  # a form button's action id; params ``ref`` and ``action``


def to_card_choice(action: str, params: dict[str, str], offer: Any) -> Choice | None:
    """A card button's pick: ``ask`` (param ``question``), ``form`` (params ``ref`` and
    ``action``), or ``feedback_like`` / ``feedback_dislike`` on the answer whose saved ``offer``
    it was."""
    if action == "ask" and params.get("question"):
        return Choice("ask", params["question"])
    if action == FORM_ACTION and params.get("ref") and params.get("action"):
        return Choice("form", params["action"], ref=params["ref"])
    rating = {"feedback_like": "like", "feedback_dislike": "dislike"}.get(action)
    if rating and isinstance(offer, dict) and offer.get("message_id"):
        return Choice("rate", rating, str(offer.get("app") or "default"),
                      str(offer["message_id"]), str(offer.get("dify_user") or ""))  # fmt: skip
    return None


async def find_offer(states: ReplyStates, place: str, message_id: str, *, since: float) -> Any:
    """The offer saved with the answer ``message_id`` in ``place`` (None when gone)."""
    for entry in reversed(await states.recent(place, since=since)):
        offer = (entry.reply_state or {}).get("offered")
        if isinstance(offer, dict) and offer.get("message_id") == message_id:
            return offer
    return None


Show = Callable[[dict[str, str]], Awaitable[None]]


class Offers:
    """Sends an answer's offer and keeps it in the answer's reply state."""

    def __init__(
        self, suggest: Suggest | None, *, feedback: bool, heading: str, rate_line: str
    ) -> None:
        self._suggest = suggest
        self._feedback = feedback
        self._heading = heading
        self._rate_line = rate_line

    async def after(
        self,
        answer: Answer,
        state: State,
        save: Callable[[State], Awaitable[None]],
        send: Callable[[str], Awaitable[None]],
        show: Show | None = None,
    ) -> None:
        """``show``: the card's buttons take the offer (its data gets ``message_id`` and
        ``suggestions``, a JSON list); else ``send`` it as a numbered message."""
        if "offered" in state or not answer.message_id:
            return  # offered already (a replica that took over), or nothing to refer to
        with best_effort("offer suggested questions", log):
            questions = await self._suggest(answer) if self._suggest is not None else []
            lines = [self._heading, *(f"{n}. {q}" for n, q in enumerate(questions, 1))]
            if not questions:
                lines = []
            if self._feedback:
                lines.append(self._rate_line)
            if not lines and show is None:
                return
            state["offered"] = {"questions": questions, "feedback": self._feedback,
                                "message_id": answer.message_id, "app": answer.app,
                                "dify_user": answer.dify_user}  # fmt: skip
            await save(state)
            if show is not None:
                suggestions = json.dumps(questions, ensure_ascii=False)
                await show({"message_id": answer.message_id, "suggestions": suggestions})
            else:
                await send("\n".join(lines))

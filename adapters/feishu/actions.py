"""Card buttons as typed actions: what a button's callback ``value`` carries, both ways.

Every button difybot puts on a card has a ``value`` with ``action`` naming what it does; a
``card.action.trigger`` callback brings it back (``event.action.value``, plus ``form_value``
for a form's submit). ``to_action`` decodes it into one of the dataclasses below, or None for
anything else; a new kind of button (Dify's human-input forms) is one more dataclass here and
one more branch in the adapter's ``on_action``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.models import ConversationKey, Scope

PLATFORM = "feishu"


@dataclass(frozen=True, slots=True)
class Stop:
    key: ConversationKey


@dataclass(frozen=True, slots=True)
class Feedback:
    app: str
    message_id: str
    dify_user: str
    rating: str  # like | dislike


@dataclass(frozen=True, slots=True)
class Ask:
    """A suggested question, asked in the place of the card it was offered on."""

    question: str
    key: ConversationKey


@dataclass(frozen=True, slots=True)
class Form:
    """A form's submit (not answered yet: Dify human-input forms come with issue 17)."""

    token: str
    values: dict[str, Any] = field(default_factory=dict)


CardAction = Stop | Feedback | Ask | Form


@dataclass(frozen=True, slots=True)
class Pressed:
    """Who pressed what, on which card message, in which chat."""

    action: CardAction
    operator: str  # open_id
    message_id: str  # the card's message (open_message_id)
    chat_id: str
    event_id: str


def stop_value(key: ConversationKey) -> dict[str, Any]:
    return {"action": "stop", **_key_value(key)}


def feedback_value(app: str, message_id: str, dify_user: str, rating: str) -> dict[str, Any]:
    return {"action": "feedback", "app": app, "message_id": message_id, "user": dify_user,
            "rating": rating}  # fmt: skip


def ask_value(question: str, key: ConversationKey) -> dict[str, Any]:
    return {"action": "ask", "question": question, **_key_value(key)}


def to_pressed(payload: Any) -> Pressed | None:
    """A ``card.action.trigger`` envelope's action; None when it is not one of ours."""
    header, event = _section(payload, "header"), _section(payload, "event")
    action, context = _section(event, "action"), _section(event, "context")
    decoded = to_action(_section(action, "value"), _section(action, "form_value"))
    if decoded is None:
        return None
    return Pressed(
        decoded,
        operator=str(_section(event, "operator").get("open_id") or ""),
        message_id=str(context.get("open_message_id") or ""),
        chat_id=str(context.get("open_chat_id") or ""),
        event_id=str(header.get("event_id") or ""),
    )


def to_action(value: dict[str, Any], form: dict[str, Any] | None = None) -> CardAction | None:
    kind = value.get("action")
    if kind == "stop":
        key = _key(value)
        return Stop(key) if key is not None else None
    if kind == "feedback" and value.get("rating") in ("like", "dislike"):
        return Feedback(str(value.get("app") or "default"), str(value.get("message_id") or ""),
                        str(value.get("user") or ""), str(value["rating"]))  # fmt: skip
    if kind == "ask" and str(value.get("question") or "").strip():
        key = _key(value)
        return Ask(str(value["question"]).strip(), key) if key is not None else None
    if kind == "form":
        return Form(str(value.get("form_token") or ""), dict(form or {}))
    return None


def _key_value(key: ConversationKey) -> dict[str, str]:
    return {"workspace": key.workspace, "scope": key.scope.value, "scope_id": key.scope_id,
            "app": key.app}  # fmt: skip


def _key(value: dict[str, Any]) -> ConversationKey | None:
    try:
        scope = Scope(str(value.get("scope")))
    except ValueError:
        return None
    scope_id = str(value.get("scope_id") or "")
    if not scope_id:
        return None
    return ConversationKey(PLATFORM, str(value.get("workspace") or ""), scope, scope_id,
                           str(value.get("app") or "default"))  # fmt: skip


def _section(payload: Any, name: str) -> dict[str, Any]:
    part = payload.get(name) if isinstance(payload, dict) else None
    return part if isinstance(part, dict) else {}

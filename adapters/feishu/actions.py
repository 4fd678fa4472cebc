"""Card buttons as typed actions: what a button's callback ``value`` carries, both ways.

Every button difybot puts on a card has a ``value`` with ``action`` naming what it does; a
``card.action.trigger`` callback brings it back (``event.action.value``, plus ``form_value``
for a button that submits a form container: its inputs' values by their ``name``). ``to_action``
decodes it into one of the dataclasses below, or None for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.models import ConversationKey, Scope

PLATFORM = "feishu"
FIELD_PREFIX = "field_"


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
    """An action button of a Dify Human Input form (``ref``: the core's name of the form), with
    the fields' values when the card has inputs. ``thread``: the card is in a group thread."""

    ref: str
    action: str
    values: dict[str, str] = field(default_factory=dict)
    thread: bool = False


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


def form_value(ref: str, action: str, *, thread: bool) -> dict[str, Any]:
    return {"action": "form", "ref": ref, "id": action, "thread": thread}


def field_name(name: str) -> str:
    """A field's input ``name`` in the card (Dify's variable names stay apart from ours)."""
    return f"{FIELD_PREFIX}{name}"


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
    if kind == "form" and value.get("ref") and value.get("id"):
        values = {name.removeprefix(FIELD_PREFIX): _text(v) for name, v in (form or {}).items()
                  if name.startswith(FIELD_PREFIX)}  # fmt: skip
        return Form(str(value["ref"]), str(value["id"]), values, value.get("thread") is True)
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


def _text(value: Any) -> str:
    """An input's value (a string; a multi-select's would be a list: joined)."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _section(payload: Any, name: str) -> dict[str, Any]:
    part = payload.get(name) if isinstance(payload, dict) else None
    return part if isinstance(part, dict) else {}

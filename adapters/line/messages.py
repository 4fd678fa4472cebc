"""LINE message objects for an answer: text parts, images, quick-reply buttons, 5 per call.

Limits (Messaging API reference, checked by tests/fakes/line_checks.py): 1..5 messages per
reply or push; a text message holds 5,000 characters counted in UTF-16 code units (🍎 is two);
image URLs must be HTTPS, 2,000 characters at most; a quick reply holds 13 buttons, each label
20 characters at most, postback data 300, ``displayText`` 300.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.line.inbound import MAX_POSTBACK_DATA, Action, Ask, FormChoice, to_data
from bot.contract import FormView
from bot.text import split_text

Message = dict[str, Any]

MAX_PER_CALL = 5
MAX_TEXT = 5000
MAX_URL = 2000
MAX_QUICK_REPLIES = 13
MAX_LABEL = 20
MAX_DISPLAY_TEXT = 300
NOTE_ROOM = 200  # a part leaves room for a note added to it (an answer cut short)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def text_messages(text: str) -> list[Message]:
    """The text as LINE text messages, cut at paragraph/sentence boundaries."""
    if not text.strip():
        return []
    parts = split_text(text, MAX_TEXT - NOTE_ROOM, measure=utf16_length)
    return [{"type": "text", "text": part} for part in parts if part.strip()]


def image_message(url: str) -> Message | None:
    """An image LINE fetches itself: only an HTTPS URL it accepts, else None (keep the link)."""
    if not url.lower().startswith("https://") or len(url) > MAX_URL:
        return None
    return {"type": "image", "originalContentUrl": url, "previewImageUrl": url}


@dataclass(frozen=True, slots=True)
class Button:
    """One quick-reply button: its label and the typed action it posts back."""

    label: str
    action: Action


def with_quick_reply(message: Message, buttons: Sequence[Button]) -> Message:
    """``message`` carrying up to 13 postback buttons (LINE shows the last message's only)."""
    items = [_item(button) for button in buttons[:MAX_QUICK_REPLIES]]
    return {**message, "quickReply": {"items": items}} if items else message


def _item(button: Button) -> dict[str, Any]:
    action: dict[str, Any] = {
        "type": "postback",
        "label": _label(button.label),
        "data": to_data(button.action),
    }
    if isinstance(button.action, Ask):  # the question shows in the chat as the user's own
        action["displayText"] = button.action.question[:MAX_DISPLAY_TEXT]
    elif isinstance(button.action, FormChoice):  # so does the choice: LINE cannot mark it
        action["displayText"] = " ".join(button.label.split())[:MAX_DISPLAY_TEXT]
    return {"type": "action", "action": action}


def form_buttons(view: FormView) -> list[Button]:
    """One button per action of a form, in Dify's order (a quick reply has 13 at most; an
    action whose id would not fit in a postback's data cannot be offered)."""
    buttons = [
        Button(action.title or action.id, FormChoice(view.ref, action.id))
        for action in view.form.actions
    ]
    fitting = [b for b in buttons if len(to_data(b.action)) <= MAX_POSTBACK_DATA]
    return fitting[:MAX_QUICK_REPLIES]


def _label(text: str) -> str:
    """At most 20 characters (LINE counts graphemes; code points are never fewer)."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def with_note(message: Message, note: str) -> Message:
    """A text message with ``note`` after it; any other message is replaced by the note."""
    if message.get("type") == "text":
        return {**message, "text": f"{message['text']}\n\n{note}"}
    return {"type": "text", "text": note}


def batches(messages: Sequence[Message]) -> list[list[Message]]:
    """Messages in calls of at most 5."""
    return [list(messages[i : i + MAX_PER_CALL]) for i in range(0, len(messages), MAX_PER_CALL)]

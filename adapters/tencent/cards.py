"""WeCom template cards for Dify Human Input forms (the self-built app and the AI bot alike)."""

from __future__ import annotations

from typing import Any

from bot.contract import FormView

SUBTITLE = 112  # characters WeCom suggests for ``sub_title_text``


def to_card(form: FormView, *, subtitle: str | None = None) -> dict[str, Any]:
    """A ``button_interaction`` card whose ``task_id`` is the form's ref and whose buttons'
    keys are the action ids. WeCom suggests at most 26 characters of title, 112 of subtitle
    and 6 buttons (the form's whole text goes in the message with it)."""
    buttons = [
        {
            "text": action.title or action.id,
            "style": 1 if action.style == "primary" else 2,
            "key": action.id,
        }
        for action in form.form.actions[:6]
    ]
    text = form.text if subtitle is None else subtitle
    return {
        "card_type": "button_interaction",
        "main_title": {"title": (form.form.node_title or "Dify")[:26]},
        "sub_title_text": text if len(text) <= SUBTITLE else text[: SUBTITLE - 1] + "…",
        "task_id": form.ref,
        "button_list": buttons,
    }


def answered_card(form: FormView, choice: str, *, subtitle: str | None = None) -> dict[str, Any]:
    """The card once clicked: its buttons grey, showing ``choice`` (``replace_text``)."""
    return {**to_card(form, subtitle=subtitle), "replace_text": choice}

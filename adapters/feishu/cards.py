"""The cards an answer is shown in (card JSON 2.0): while it streams, and when it is done.

One ``markdown`` element named ``answer`` holds the text (CardKit streams into it by that id);
buttons sit under it: Stop while the answer runs, 👍/👎 and suggested questions once it is done.
Facts used (open.feishu.cn, "卡片 JSON 2.0 结构", "流式更新卡片"): ``config.streaming_mode``
turns streaming on for a card entity, ``summary`` is what the chat list shows meanwhile; a
button's ``behaviors`` ``callback`` sends its ``value`` back as ``card.action.trigger``; a card
body is at most 30 KB.

A Dify form is a card of its own under the answer ("表单容器", "输入框", "下拉选择-单选"): its
text, then one button per action; with fields, the inputs and the buttons sit in a ``form``
container (only under the body's root; every input and button in it has a ``name``, unique in
the card) and a button with ``form_action_type: submit`` sends the inputs' values as
``form_value`` with its own ``value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.feishu.actions import field_name, form_value
from adapters.feishu.markdown import escape, to_card_markdown
from bot.contract import FormView
from bot.models import FormField

ANSWER = "answer"  # the answer element's id (letters, digits, underscores; 20 at most)
Card = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    value: dict[str, Any]
    kind: str = "default"  # default | primary | danger | text


def card(
    text: str,
    *,
    buttons: Sequence[Button] = (),
    note: str = "",
    streaming: bool = False,
    summary: str = "",
    asks: Sequence[Button] = (),
    asks_label: str = "",
) -> Card:
    """The whole card: the answer, an optional grey note under it, its buttons, then the
    suggested questions under their label."""
    elements: list[dict[str, Any]] = [{"tag": "markdown", "element_id": ANSWER, "content": text}]
    if note:
        elements.append(_note(note))
    elements.extend(_button(b, n) for n, b in enumerate(buttons))
    if asks:
        elements.append(_note(asks_label))
        elements.extend(_button(b, n) for n, b in enumerate(asks, start=len(buttons)))
    config: dict[str, Any] = {"update_multi": True, "streaming_mode": streaming}
    if summary:
        config["summary"] = {"content": summary}
    return {"schema": "2.0", "config": config, "body": {"elements": elements}}


def _note(text: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": f"<font color='grey'>{escape(text)}</font>",
            "text_size": "notation"}  # fmt: skip


def _button(button: Button, number: int) -> dict[str, Any]:
    return {
        "tag": "button",
        "element_id": f"b{number}",
        "text": {"tag": "plain_text", "content": button.label},
        "type": button.kind,
        "behaviors": [{"type": "callback", "value": button.value}],
    }


def form_card(view: FormView, *, thread: bool, note: str = "") -> Card:
    """A form's card: its text and, while it is open (no ``note``), its inputs and buttons;
    once answered, expired or taken elsewhere, the text and ``note`` (the choice, or why not)."""
    form = view.form
    text = to_card_markdown(view.text) or escape(form.node_title) or " "
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": text}]
    summary = {"content": summary_of(form.node_title or view.text)}
    config = {"update_multi": True, "streaming_mode": False, "summary": summary}
    if note:
        elements.append(_note(note))
        return {"schema": "2.0", "config": config, "body": {"elements": elements}}
    fields = [f for f in form.fields if not f.is_file]  # a card has no file input
    buttons = []
    for number, action in enumerate(form.actions):
        button = _button(Button(action.title or action.id,
                                form_value(view.ref, action.id, thread=thread),
                                "primary" if action.style == "primary" else "default"),
                         number)  # fmt: skip
        if fields:
            button |= {"name": f"action_{number}", "form_action_type": "submit"}
        buttons.append(button)
    if fields:
        inputs = [_input(f) for f in fields]
        elements.append({"tag": "form", "name": "dify_form", "element_id": "dify_form",
                         "elements": [*inputs, *buttons]})  # fmt: skip
    else:
        elements.extend(buttons)
    return {"schema": "2.0", "config": config, "body": {"elements": elements}}


def _input(item: FormField) -> dict[str, Any]:
    label = {"tag": "plain_text", "content": item.name}
    if item.options:
        options = [{"text": {"tag": "plain_text", "content": o}, "value": o} for o in item.options]
        select: dict[str, Any] = {"tag": "select_static", "name": field_name(item.name),
                                  "placeholder": label, "options": options}  # fmt: skip
        if item.default in item.options:
            select["initial_option"] = item.default
        return select
    field: dict[str, Any] = {"tag": "input", "name": field_name(item.name), "label": label,
                             "label_position": "top", "placeholder": label}  # fmt: skip
    if item.type == "paragraph":
        field |= {"input_type": "multiline_text", "rows": 3, "auto_resize": True}
    if item.default:
        field["default_value"] = item.default
    return field


def streaming_off(summary: str) -> dict[str, Any]:
    """The settings call that ends a card entity's streaming."""
    return {"config": {"streaming_mode": False, "summary": {"content": summary}}}


def summary_of(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

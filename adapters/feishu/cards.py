"""The cards an answer is shown in (card JSON 2.0): while it streams, and when it is done.

One ``markdown`` element named ``answer`` holds the text (CardKit streams into it by that id);
buttons sit under it: Stop while the answer runs, 👍/👎 and suggested questions once it is done.
Facts used (open.feishu.cn, "卡片 JSON 2.0 结构", "流式更新卡片"): ``config.streaming_mode``
turns streaming on for a card entity, ``summary`` is what the chat list shows meanwhile; a
button's ``behaviors`` ``callback`` sends its ``value`` back as ``card.action.trigger``; a card
body is at most 30 KB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.feishu.markdown import escape

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


def streaming_off(summary: str) -> dict[str, Any]:
    """The settings call that ends a card entity's streaming."""
    return {"config": {"streaming_mode": False, "summary": {"content": summary}}}


def summary_of(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

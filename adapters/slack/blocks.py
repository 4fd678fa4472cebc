"""Block Kit for answers: the answer body, status line, Stop, feedback, suggestions, sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.slack.mrkdwn import escape, to_mrkdwn
from bot.text import split_text

Block = dict[str, Any]

STOP = "dify_stop"
FEEDBACK_LIKE = "dify_feedback_like"
FEEDBACK_DISLIKE = "dify_feedback_dislike"
ASK_PREFIX = "dify_ask_"
SECTION_LIMIT = 3000  # a section's text (slack_sdk SectionBlock.text_max_length)
FALLBACK_LIMIT = 3000  # the notification text that accompanies blocks
_MAX_SOURCES = 5


@dataclass(frozen=True, slots=True)
class Labels:
    """The bot's own words on Slack, in the asker's language (``bot.texts`` keys ``slack_*``)."""

    thinking: str
    stop: str
    sources: str
    like: str
    dislike: str
    suggested: str

    @classmethod
    def from_texts(cls, get: Callable[[str], str]) -> Labels:
        return cls(
            thinking=get("slack_thinking"),
            stop=get("slack_stop"),
            sources=get("slack_sources"),
            like=get("slack_like"),
            dislike=get("slack_dislike"),
            suggested=get("slack_suggested"),
        )


def body_blocks(markdown: str, *, markdown_blocks: bool) -> list[Block]:
    """The answer itself: a ``markdown`` block (standard Markdown, ≤12k), or mrkdwn sections."""
    if not markdown.strip():
        return []
    if markdown_blocks:
        return [{"type": "markdown", "text": markdown}]
    text = to_mrkdwn(markdown)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
        for chunk in split_text(text, SECTION_LIMIT)
        if chunk.strip()
    ]


def fallback_text(markdown: str) -> str:
    """``text`` beside the blocks: what notifications and old clients show."""
    text = to_mrkdwn(markdown) if markdown.strip() else ""
    return text if len(text) <= FALLBACK_LIMIT else text[: FALLBACK_LIMIT - 1] + "…"


def interim_text(markdown: str) -> str:
    """``text`` beside an interim edit: an edit notifies nobody and the final one sets the real
    fallback, so the Markdown is only escaped, not converted (a parse per edit, under load)."""
    text = escape(markdown.strip())
    return text if len(text) <= FALLBACK_LIMIT else text[: FALLBACK_LIMIT - 1] + "…"


def status_block(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{escape(text)}_"}]}


def stop_block(label: str, value: str) -> Block:
    button = {
        "type": "button",
        "action_id": STOP,
        "text": {"type": "plain_text", "text": f"⏹ {label}"},
        "value": value,
    }
    return {"type": "actions", "block_id": STOP, "elements": [button]}


def feedback_block(message_id: str, dify_user: str, labels: Labels, app: str = "default") -> Block:
    """👍/👎 for Dify's feedback API; the value carries who asked (Dify checks the user)."""
    value = f"{message_id}|{dify_user}|{app}"  # routing: feedback goes to the app that answered
    buttons = [
        _button(FEEDBACK_LIKE, f"👍 {labels.like}", value),
        _button(FEEDBACK_DISLIKE, f"👎 {labels.dislike}", value),
    ]
    return {"type": "actions", "block_id": "dify_feedback", "elements": buttons}


def suggestion_blocks(questions: Sequence[str], labels: Labels) -> list[Block]:
    """Suggested questions as buttons that ask them (Slack allows 75 chars of label)."""
    buttons = [
        _button(f"{ASK_PREFIX}{i}", _clip(q, 75), _clip(q, 2000))
        for i, q in enumerate(questions[:5])
        if q.strip()
    ]
    if not buttons:
        return []
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(labels.suggested)}]},
        {"type": "actions", "block_id": "dify_suggested", "elements": buttons},
    ]


def sources_block(resources: Sequence[dict[str, Any]], label: str) -> Block | None:
    """Dify's ``retriever_resources`` as one compact line: the distinct document names."""
    names = [str(r.get("document_name") or "").strip() for r in resources]
    unique = list(dict.fromkeys(name for name in names if name))
    if not unique:
        return None
    shown = ", ".join(escape(name) for name in unique[:_MAX_SOURCES])
    more = f" +{len(unique) - _MAX_SOURCES}" if len(unique) > _MAX_SOURCES else ""
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"📚 {label}: {shown}{more}"}],
    }


def asked_block(user_id: str, question: str) -> Block:
    """Who asked what, shown where a button or /dify asked on someone's behalf."""
    text = f"<@{user_id}>: {escape(_clip(question, 2900))}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(action_id: str, text: str, value: str) -> Block:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
    }


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

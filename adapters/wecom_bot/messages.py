"""WeCom AI bot callbacks (decrypted JSON) normalized, and the ``stream`` replies it expects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.errors import CallbackRejected
from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "wecom_bot"
# In a group the text starts with the bot's @name; Dify should not see it.
_MENTION = re.compile(r"^\s*@\S+\s*")


@dataclass(frozen=True, slots=True)
class BotPush:
    """One AI bot callback: a message, a stream refresh, or an event."""

    kind: str  # text, mixed, voice, image, file, video, stream, event
    msg_id: str
    bot_id: str
    chat_id: str
    chat_type: str  # single | group
    user_id: str
    response_url: str = ""
    text: str = ""
    stream_id: str = ""
    event: str = ""
    images: tuple[str, ...] = ()
    file_url: str = ""
    task_id: str = ""  # template_card_event: the clicked card's task_id
    event_key: str = ""  # ... and the clicked button's key


def to_bot_push(payload: Any) -> BotPush:
    """Normalize a decrypted callback; 400 when it is not the JSON object WeCom sends."""
    if not isinstance(payload, dict) or not payload.get("msgtype"):
        raise CallbackRejected("AI bot callback without msgtype", status=400)
    kind = str(payload["msgtype"])
    sender = _section(payload, "from")
    chat_type = str(payload.get("chattype") or "single")
    text, images = _content(kind, payload)
    if chat_type == "group":
        text = _MENTION.sub("", text, count=1)
    event = _section(payload, "event")
    card = event.get("template_card_event")
    card = card if isinstance(card, dict) else {}
    return BotPush(
        kind=kind,
        msg_id=str(payload.get("msgid") or ""),
        bot_id=str(payload.get("aibotid") or ""),
        chat_id=str(payload.get("chatid") or ""),
        chat_type=chat_type,
        user_id=str(sender.get("userid") or ""),
        response_url=str(payload.get("response_url") or ""),
        text=text,
        stream_id=str(_get(payload, "stream", "id")),
        event=str(event.get("eventtype") or ""),
        images=images,
        file_url=str(_get(payload, "file", "url")),
        task_id=str(card.get("task_id") or ""),
        event_key=str(card.get("event_key") or ""),
    )


def _section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    part = payload.get(name)
    return part if isinstance(part, dict) else {}


def _get(payload: dict[str, Any], section: str, field: str) -> Any:
    part = payload.get(section)
    return part.get(field, "") if isinstance(part, dict) else ""


def _content(kind: str, payload: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    if kind in ("text", "voice"):  # voice arrives already transcribed
        return str(_get(payload, kind, "content")), ()
    if kind == "image":
        return "", (str(_get(payload, "image", "url")),)
    if kind == "mixed":
        items = _get(payload, "mixed", "msg_item") or []
        texts = [str(_get(i, "text", "content")) for i in items if i.get("msgtype") == "text"]
        urls = [str(_get(i, "image", "url")) for i in items if i.get("msgtype") == "image"]
        return "\n".join(t for t in texts if t), tuple(u for u in urls if u)
    return "", ()


def to_incoming(push: BotPush, *, text: str, per_chat: bool, locale: str) -> IncomingMessage:
    """One conversation per member; in a group, per member in that group (or per group)."""
    if push.chat_type == "group" and per_chat:
        scope, scope_id = Scope.CHANNEL, push.chat_id
    elif push.chat_type == "group":
        scope, scope_id = Scope.USER, f"{push.user_id}@{push.chat_id}"
    else:
        scope, scope_id = Scope.USER, push.user_id
    key = ConversationKey(platform=PLATFORM, workspace=push.bot_id, scope=scope, scope_id=scope_id)
    attachments = tuple(
        Attachment(name=f"image{i}.jpg", mime_type="image/jpeg", url=url)
        for i, url in enumerate(push.images)
    )
    if push.file_url:  # nameless: the file source names it from its first bytes
        file = Attachment(name="file", mime_type="application/octet-stream", url=push.file_url)
        attachments = (*attachments, file)
    return IncomingMessage(
        platform=PLATFORM,
        workspace=push.bot_id,
        user_id=push.user_id,
        text=text,
        key=key,
        message_id=push.msg_id,
        attachments=attachments,
        locale=locale,
        channel_id=push.chat_id or None,
    )


def stream_reply(stream_id: str, content: str, *, finished: bool) -> dict[str, Any]:
    """The ``stream`` reply: the whole text so far each time (WeCom replaces, not appends)."""
    return {
        "msgtype": "stream",
        "stream": {"id": stream_id, "finish": finished, "content": content},
    }

"""``im.message.receive_v1`` events normalized: who asked what, where, with which files.

Pure functions over the event's JSON (table-tested over tests/payloads/feishu). Facts used
(open.feishu.cn, "接收消息" and the message content docs): ``content`` is a JSON string whose
shape depends on ``message_type``; a mention shows in the text as its ``key`` (``@_user_1``) and
``mentions`` says who it is; a ``post`` is lines of runs (``text``, ``a``, ``at``, ``img``,
``code_inline``…), possibly under a language key; files are fetched by (message id, key, type).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any

import orjson

from bot.errors import CallbackRejected
from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "feishu"
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True, slots=True)
class Received:
    """One message a person posted, as the event says it."""

    event_id: str
    message_id: str
    tenant: str
    chat_id: str
    chat_type: str  # p2p | group
    sender: str  # open_id
    sender_type: str  # user | app
    root_id: str
    thread_id: str
    text: str
    mentions: tuple[str, ...]  # open_ids mentioned
    attachments: tuple[Attachment, ...]

    @property
    def in_group(self) -> bool:
        return self.chat_type != "p2p"

    @property
    def thread_root(self) -> str:
        """The message a group conversation hangs from: the thread's root, or this one."""
        return self.root_id or self.message_id


def to_received(payload: Any, *, bot_open_id: str = "") -> Received:
    """An ``im.message.receive_v1`` envelope (schema 2.0); 400 when it is not one."""
    header, event = _section(payload, "header"), _section(payload, "event")
    message, sender = _section(event, "message"), _section(event, "sender")
    message_id = str(message.get("message_id") or "")
    if not message_id or not message.get("chat_id"):
        raise CallbackRejected("message event without message_id or chat_id", status=400)
    content = _content(message.get("content"))
    mentions = [m for m in message.get("mentions") or [] if isinstance(m, dict)]
    kind = str(message.get("message_type") or "")
    text, attachments = _text_and_files(kind, content, message_id)
    return Received(
        event_id=str(header.get("event_id") or ""),
        message_id=message_id,
        tenant=str(header.get("tenant_key") or sender.get("tenant_key") or ""),
        chat_id=str(message["chat_id"]),
        chat_type=str(message.get("chat_type") or "p2p"),
        sender=str(_section(sender, "sender_id").get("open_id") or ""),
        sender_type=str(sender.get("sender_type") or "user"),
        root_id=str(message.get("root_id") or ""),
        thread_id=str(message.get("thread_id") or ""),
        text=_named(text, mentions, bot_open_id).strip(),
        mentions=tuple(str(_section(m, "id").get("open_id") or "") for m in mentions),
        attachments=attachments,
    )


def to_incoming(
    received: Received, *, locale: str, per_chat: bool = False, owner: str = ""
) -> tuple[IncomingMessage, dict[str, Any]]:
    """The message and where its answer goes: one conversation per user in a p2p chat, per
    thread in a group (the thread a mention starts under the question). Dify scopes a
    conversation to one user, so a thread's messages all go as its ``owner``'s (whoever
    mentioned the bot first), each with its real author."""
    if received.in_group:
        scope, scope_id = Scope.THREAD, received.thread_root
    elif per_chat:
        scope, scope_id = Scope.CHANNEL, received.chat_id
    else:
        scope, scope_id = Scope.USER, received.sender
    key = ConversationKey(PLATFORM, received.tenant, scope, scope_id)
    message = IncomingMessage(
        platform=PLATFORM,
        workspace=received.tenant,
        user_id=owner or received.sender,
        text=received.text,
        key=key,
        message_id=received.message_id,
        attachments=received.attachments,
        locale=locale,
        channel_id=received.chat_id,
        author_id=received.sender if owner and owner != received.sender else "",
    )
    where = {"chat_id": received.chat_id, "reply_to": received.message_id,
             "in_thread": received.in_group, "user": received.sender}  # fmt: skip
    return message, where


def mentions_bot(received: Received, bot_open_id: str) -> bool:
    return bool(bot_open_id) and bot_open_id in received.mentions


# ---- content ----------------------------------------------------------------------------------


def _content(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        content = orjson.loads(raw) if isinstance(raw, str | bytes) else {}
    except orjson.JSONDecodeError:
        raise CallbackRejected("message content is not JSON", status=400) from None
    return content if isinstance(content, dict) else {}


def _text_and_files(
    kind: str, content: dict[str, Any], message_id: str
) -> tuple[str, tuple[Attachment, ...]]:
    if kind == "text":
        return str(content.get("text") or ""), ()
    if kind == "post":
        return _post(content, message_id)
    if kind == "image":
        return "", _image(content.get("image_key"), message_id)
    if kind in ("file", "audio", "media"):
        return "", _file(kind, content, message_id)
    return "", ()


def _post(content: dict[str, Any], message_id: str) -> tuple[str, tuple[Attachment, ...]]:
    if "content" not in content:  # {"zh_cn": {"title", "content"}}: the first language
        content = next((v for v in content.values() if isinstance(v, dict)), {})
    lines: list[str] = []
    files: list[Attachment] = []
    title = str(content.get("title") or "")
    for line in content.get("content") or []:
        runs = []
        for run in line if isinstance(line, list) else []:
            if not isinstance(run, dict):
                continue
            tag = run.get("tag")
            if tag == "img":
                files.extend(_image(run.get("image_key"), message_id))
            elif tag == "a":
                runs.append(f"[{run.get('text') or run.get('href')}]({run.get('href')})")
            elif tag == "at":
                runs.append(str(run.get("user_id") or ""))  # the mention key, named later
            elif tag == "code_inline":
                runs.append(f"`{run.get('text', '')}`")
            else:
                runs.append(str(run.get("text") or ""))
        lines.append("".join(runs))
    text = "\n".join(line for line in lines if line.strip())
    return (f"{title}\n{text}" if title else text), tuple(files)


def _image(key: Any, message_id: str) -> tuple[Attachment, ...]:
    if not isinstance(key, str) or not key:
        return ()
    return (Attachment("image.png", "image/png", platform_id=f"{message_id}/{key}/image"),)


def _file(kind: str, content: dict[str, Any], message_id: str) -> tuple[Attachment, ...]:
    key = content.get("file_key")
    if not isinstance(key, str) or not key:
        return ()
    default = {"audio": "voice.opus", "media": "video.mp4"}.get(kind, "file")
    name = str(content.get("file_name") or default)
    mime = "audio/opus" if kind == "audio" else mimetypes.guess_type(name)[0]
    return (
        Attachment(name, mime or "application/octet-stream",
                   platform_id=f"{message_id}/{key}/file", voice=kind == "audio"),
    )  # fmt: skip


def _named(text: str, mentions: list[dict[str, Any]], bot_open_id: str) -> str:
    """Mention keys out of the text: the bot's removed, other people's as ``@name``."""
    for item in mentions:
        key = str(item.get("key") or "")
        if not key:
            continue
        is_bot = bot_open_id and _section(item, "id").get("open_id") == bot_open_id
        text = text.replace(key, "" if is_bot else f"@{item.get('name') or ''}")
    return _SPACES.sub(" ", text)


def _section(payload: Any, name: str) -> dict[str, Any]:
    part = payload.get(name) if isinstance(payload, dict) else None
    return part if isinstance(part, dict) else {}

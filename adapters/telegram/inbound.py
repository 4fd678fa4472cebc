"""Telegram updates normalized: what each one asks of the bot (pure; table-tested over the
captured payloads in tests/payloads/telegram/).

Facts relied on (core.telegram.org/bots/api#update, #messageentity): commands and @mentions come
as ``bot_command`` / ``mention`` entities whose offsets count UTF-16 code units; a photo is several
PhotoSize objects, smallest first; in a forum topic every message carries ``message_thread_id``
and ``is_topic_message`` (its ``reply_to_message`` is then the topic's creation message, not a
reply chain); an anonymous group admin writes as ``GroupAnonymousBot`` with ``sender_chat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "telegram"
COMMANDS = ("start", "new", "help", "ask")  # the bot's own; never sent to Dify (but /ask's text)
ANONYMOUS_ADMIN = 1087968824  # GroupAnonymousBot: an admin posting as the group
# What a person sends that the bot cannot pass on to Dify: answered with /help's text.
_UNREAD_CONTENT = ("sticker", "video", "video_note", "animation", "location", "contact", "poll",
                   "dice", "venue")  # fmt: skip


@dataclass(frozen=True, slots=True)
class BotIdentity:
    id: int
    username: str


@dataclass(frozen=True, slots=True)
class Update:
    """One update, as the adapter acts on it.

    ``kind``: ``ask`` (a question for Dify), ``command`` (start/new/help: the bot answers),
    ``press`` (an inline button), ``stop`` (a draft's stop button), ``ignore``."""

    kind: str
    update_id: int
    chat_id: int = 0
    chat_type: str = ""
    user_id: int = 0
    message_id: int = 0
    thread_id: int | None = None  # forum topic
    reply_to: int | None = None  # the message a reply-chain question replies to
    command: str = ""
    text: str = ""
    locale: str | None = None
    callback_id: str = ""
    callback_data: str = ""
    user_name: str = ""  # who pressed a button (their first name: a mention in a group)
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def in_group(self) -> bool:
        return self.chat_type in ("group", "supergroup")


def to_update(raw: Any, bot: BotIdentity) -> Update:
    """What ``raw`` asks; ``ignore`` for anything else (edits, joins, other bots, chatter)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
        raise ValueError("not an Update: no integer update_id")
    update_id = raw["update_id"]
    if isinstance(raw.get("callback_query"), dict):
        return _press(update_id, raw["callback_query"])
    stopped = raw.get("stopped_message_generation")
    if isinstance(stopped, dict):  # the user pressed a draft's stop button (private chats)
        chat = _dict(stopped.get("chat"))
        chat_id = int(chat.get("id") or 0)
        thread = _int(stopped.get("message_thread_id"))
        kind = str(chat.get("type") or "")
        return Update("stop", update_id, chat_id=chat_id, chat_type=kind, user_id=chat_id,
                      thread_id=thread)  # fmt: skip
    message = raw.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
        return Update("ignore", update_id)
    return _message(update_id, message, bot)


def _press(update_id: int, query: dict[str, Any]) -> Update:
    message = _dict(query.get("message"))
    chat, sender = _dict(message.get("chat")), _dict(query.get("from"))
    return Update(
        "press",
        update_id,
        chat_id=int(chat.get("id") or 0),
        chat_type=str(chat.get("type") or ""),
        user_id=int(sender.get("id") or 0),
        message_id=int(message.get("message_id") or 0),
        thread_id=_thread(message),
        callback_id=str(query.get("id") or ""),
        callback_data=str(query.get("data") or ""),
        user_name=str(sender.get("first_name") or ""),
        locale=_locale(sender),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _message(update_id: int, message: dict[str, Any], bot: BotIdentity) -> Update:
    chat, sender = message["chat"], message.get("from") or {}
    user_id = int(sender.get("id") or 0)
    if sender.get("id") == ANONYMOUS_ADMIN and isinstance(message.get("sender_chat"), dict):
        user_id = int(message["sender_chat"].get("id") or 0)
    elif sender.get("is_bot") or not user_id:
        return Update("ignore", update_id)
    text, entities = _text(message)
    command, rest = _command(text, entities, bot)
    group = chat.get("type") in ("group", "supergroup")
    base = Update(
        "ask",
        update_id,
        chat_id=int(chat.get("id") or 0),
        chat_type=str(chat.get("type") or ""),
        user_id=user_id,
        message_id=int(message.get("message_id") or 0),
        thread_id=_thread(message),
        locale=_locale(sender),
    )
    if command in ("start", "new", "help"):
        return replace(base, kind="command", command=command)
    if command == "ask":
        text = rest
    elif group:
        mentioned, text = _without_mention(text, entities, bot)
        if not mentioned and not _replies_to(message, bot):
            return Update("ignore", update_id)
    attachments = _attachments(message)
    if not text.strip() and not attachments:
        # "/ask" alone, a bare mention, a sticker: say what the bot can take (never for a
        # service message, such as a pin)
        said = command or group or any(kind in message for kind in _UNREAD_CONTENT)
        return (
            replace(base, kind="command", command="help") if said else Update("ignore", update_id)
        )
    reply_to = _reply_chain(message) if group else None
    return replace(base, text=text.strip(), attachments=attachments, reply_to=reply_to)


def to_incoming(
    update: Update, bot: BotIdentity, *, scope: str, root: int | None = None
) -> IncomingMessage:
    """The question as the core takes it. ``scope`` (groups): ``thread`` (forum topic, else
    reply chain ``root``), ``user`` (each member) or ``chat``; a private chat is its user's."""
    workspace, chat = str(bot.id), str(update.chat_id)
    if not update.in_group:
        key_scope, scope_id = Scope.USER, str(update.user_id)
    elif scope == "chat":
        key_scope, scope_id = Scope.CHANNEL, chat
    elif scope == "user":
        key_scope, scope_id = Scope.USER, f"{chat}:{update.user_id}"
    elif update.thread_id is not None:
        key_scope, scope_id = Scope.THREAD, f"{chat}:topic:{update.thread_id}"
    else:
        key_scope, scope_id = Scope.THREAD, f"{chat}:{root or update.message_id}"
    key = ConversationKey(
        platform=PLATFORM, workspace=workspace, scope=key_scope, scope_id=scope_id
    )
    shared = key_scope is not Scope.USER
    return IncomingMessage(
        platform=PLATFORM,
        workspace=workspace,
        user_id=f"chat{chat}" if shared else str(update.user_id),
        text=update.text,
        key=key,
        message_id=str(update.update_id),
        attachments=update.attachments,
        channel_id=chat,
        author_id=str(update.user_id),
        user_locale=update.locale,
    )


def _text(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(message.get("text"), str):
        return message["text"], _list(message.get("entities"))
    caption = message.get("caption")
    return (caption if isinstance(caption, str) else ""), _list(message.get("caption_entities"))


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _span(text: str, entity: dict[str, Any]) -> tuple[int, int]:
    """An entity's (start, end) as Python string indexes (entities count UTF-16 units)."""
    encoded = text.encode("utf-16-le", "surrogatepass")
    offset, length = int(entity.get("offset") or 0), int(entity.get("length") or 0)
    start = len(encoded[: offset * 2].decode("utf-16-le", "surrogatepass"))
    end = len(encoded[: (offset + length) * 2].decode("utf-16-le", "surrogatepass"))
    return start, end


def _command(text: str, entities: list[dict[str, Any]], bot: BotIdentity) -> tuple[str, str]:
    """(our command, the text after it) when the message starts with one, else ("", text)."""
    first = next((e for e in entities if e.get("type") == "bot_command"), None)
    if first is None or int(first.get("offset") or 0) != 0:
        return "", text
    start, end = _span(text, first)
    name, _, target = text[start + 1 : end].partition("@")
    if target and target.lower() != bot.username.lower():
        return "", text  # another bot's command
    name = name.lower()
    return (name, text[end:].strip()) if name in COMMANDS else ("", text)


def _without_mention(
    text: str, entities: list[dict[str, Any]], bot: BotIdentity
) -> tuple[bool, str]:
    for entity in entities:
        start, end = _span(text, entity)
        if (
            entity.get("type") == "mention"
            and text[start:end].lower() == f"@{bot.username}".lower()
        ):
            return True, _cut(text, start, end)
        user = _dict(entity.get("user"))
        if entity.get("type") == "text_mention" and user.get("id") == bot.id:
            return True, _cut(text, start, end)
    return False, text


def _cut(text: str, start: int, end: int) -> str:
    return f"{text[:start].rstrip()} {text[end:].lstrip()}".strip()


def _replies_to(message: dict[str, Any], bot: BotIdentity) -> bool:
    replied = message.get("reply_to_message")
    if not isinstance(replied, dict) or _is_topic_root(message):
        return False
    return (replied.get("from") or {}).get("id") == bot.id


def _reply_chain(message: dict[str, Any]) -> int | None:
    replied = message.get("reply_to_message")
    if not isinstance(replied, dict) or _is_topic_root(message):
        return None
    return int(replied.get("message_id") or 0) or None


def _is_topic_root(message: dict[str, Any]) -> bool:
    """In a forum topic, a message not replying to anything carries the topic's creation."""
    replied = message.get("reply_to_message") or {}
    return bool(message.get("is_topic_message")) and "forum_topic_created" in replied


def _thread(message: dict[str, Any]) -> int | None:
    if message.get("is_topic_message") and isinstance(message.get("message_thread_id"), int):
        return int(message["message_thread_id"])
    return None


def _locale(user: dict[str, Any]) -> str | None:
    code = user.get("language_code")
    return str(code) if isinstance(code, str) and code else None


def _attachments(message: dict[str, Any]) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    photos = _list(message.get("photo"))
    if photos:
        largest = photos[-1]  # smallest first: the last is the original
        name = f"photo_{largest.get('file_unique_id') or 'telegram'}.jpg"
        found.append(_file(largest, name, "image/jpeg"))
    document = message.get("document")
    if isinstance(document, dict):
        name = str(document.get("file_name") or "document")
        found.append(_file(document, name, str(document.get("mime_type") or "")))
    audio = message.get("audio")
    if isinstance(audio, dict):
        name = str(audio.get("file_name") or "audio.mp3")
        found.append(_file(audio, name, str(audio.get("mime_type") or "audio/mpeg")))
    voice = message.get("voice")
    if isinstance(voice, dict):
        found.append(_file(voice, "voice.ogg", str(voice.get("mime_type") or "audio/ogg"), True))
    return tuple(found)


def _file(raw: dict[str, Any], name: str, mime_type: str, voice: bool = False) -> Attachment:
    size = raw.get("file_size")
    return Attachment(
        name=name,
        mime_type=mime_type or "application/octet-stream",
        size=size if isinstance(size, int) else None,
        platform_id=str(raw.get("file_id") or ""),
        voice=voice,
    )

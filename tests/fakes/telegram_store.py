"""What the fake Telegram holds: chats, messages as a person sees them now, drafts, files.

Shapes follow the Bot API objects (core.telegram.org/bots/api#message, #chat, #file, ...).
File identifiers imitate Telegram's: a long ``file_id`` (valid for this bot only) and a short
``file_unique_id``; ``file_path`` values look like the real ones (``photos/file_3.jpg``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import mimetypes
import struct
from dataclasses import dataclass, field
from typing import Any

PRIVATE, GROUP, SUPERGROUP = "private", "group", "supergroup"
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses larger files ("file is too big")
MAX_PHOTO = 10 * 1024 * 1024  # tdlib MAX_PHOTO_SIZE
FILE_FOLDERS = {
    "photo": "photos",
    "document": "documents",
    "voice": "voice",
    "audio": "music",
    "video": "videos",
}
FILE_ID_PREFIX = {
    "photo": b"\x02\x00\x02",
    "document": b"\x05\x00\x02",
    "voice": b"\x03\x00\x02",
    "audio": b"\x04\x00\x02",
    "video": b"\x06\x00\x02",
}


@dataclass
class Chat:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    is_forum: bool = False
    topics: set[int] = field(default_factory=set)  # message_thread_id values that exist
    blocked: bool = False  # the user blocked the bot (private) / the bot was removed (groups)

    @property
    def is_group(self) -> bool:
        return self.type in (GROUP, SUPERGROUP)

    def shape(self) -> dict[str, Any]:
        shaped: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name", "last_name"):
            if getattr(self, key) is not None:
                shaped[key] = getattr(self, key)
        if self.is_forum:
            shaped["is_forum"] = True
        return shaped


@dataclass
class StoredFile:
    kind: str  # photo, document, voice, audio, video
    data: bytes
    file_id: str
    file_unique_id: str
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    declared_size: int | None = None  # pretend size (getFile's 20 MB check) without the bytes
    width: int = 0
    height: int = 0
    duration: int = 0

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.data)

    def shape(self) -> dict[str, Any]:
        """The object a Message carries (Document, Voice, one PhotoSize, ...)."""
        shaped: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.kind == "photo":
            shaped.update(width=self.width, height=self.height)
        if self.kind in ("voice", "audio", "video"):
            shaped["duration"] = self.duration
        if self.kind == "document" and self.file_name:
            shaped["file_name"] = self.file_name
        if self.mime_type and self.kind != "photo":
            shaped["mime_type"] = self.mime_type
        shaped["file_size"] = self.size
        return shaped


@dataclass
class Message:
    chat: Chat
    message_id: int
    sender: dict[str, Any]
    date: int
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    media: StoredFile | None = None
    thumbnails: list[StoredFile] = field(default_factory=list)  # smaller photo sizes, incoming
    service: dict[str, Any] | None = None  # e.g. {"forum_topic_created": {...}}
    reply_to: Message | None = None
    thread_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    edit_date: int | None = None
    edits: int = 0
    sent_html: str | None = None  # the raw text as the bot sent it (parse_mode HTML)
    history: list[str] = field(default_factory=list)  # every text it showed, oldest first

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def body(self) -> str:
        return self.text if self.text is not None else (self.caption or "")

    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def shape(self, *, with_reply: bool = True) -> dict[str, Any]:
        shaped: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": self.chat.shape(),
            "date": self.date,
        }
        if self.thread_id is not None:
            shaped["message_thread_id"] = self.thread_id
            if self.chat.is_forum:
                shaped["is_topic_message"] = True
        if self.reply_to is not None and with_reply:
            shaped["reply_to_message"] = self.reply_to.shape(with_reply=False)
        if self.edit_date is not None:
            shaped["edit_date"] = self.edit_date
        if self.text is not None:
            shaped["text"] = self.text
            if self.entities:
                shaped["entities"] = self.entities
        if self.media is not None:
            shaped.update(_media_fields(self.media, self.thumbnails))
        if self.service:
            shaped.update(self.service)
        if self.caption:
            shaped["caption"] = self.caption
            if self.entities:
                shaped["caption_entities"] = self.entities
        if self.reply_markup:
            shaped["reply_markup"] = self.reply_markup
        return shaped


def _media_fields(media: StoredFile, thumbnails: list[StoredFile]) -> dict[str, Any]:
    if media.kind == "photo":  # every size, smallest first: the original is the last one
        return {"photo": [size.shape() for size in [*thumbnails, media]]}
    return {media.kind: media.shape()}


@dataclass
class Draft:
    """A live draft (sendMessageDraft): ephemeral, shown until replaced, expired or a message
    arrives in the same chat and topic."""

    chat_id: int
    thread_id: int | None
    draft_id: int
    text: str
    entities: list[dict[str, Any]]
    frames: list[str] = field(default_factory=list)  # every text shown, in order
    can_stop: bool = False
    keep_on_stop: bool = False
    updated_at: float = 0.0
    superseded: bool = False  # a real message replaced it


@dataclass
class CallbackQuery:
    id: str
    user: dict[str, Any]
    chat_id: int | None
    message_id: int | None
    data: str
    pushed_at: float
    answer: dict[str, Any] | None = None


class Files:
    """Files Telegram holds for this bot: incoming ones tests add, outgoing ones the bot sent."""

    def __init__(self) -> None:
        self.by_id: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)

    def add(
        self,
        kind: str,
        data: bytes,
        *,
        mime_type: str | None = None,
        file_name: str | None = None,
        declared_size: int | None = None,
        duration: int = 0,
    ) -> StoredFile:
        n = next(self._ids)
        digest = hashlib.sha256(data + n.to_bytes(4, "big")).digest()
        file_id = _b64(
            FILE_ID_PREFIX.get(kind, b"\x05\x00\x02")
            + digest[:2]
            + n.to_bytes(4, "big")
            + digest[2:40]
        )
        unique = _b64(b"\x01\x00" + digest[:8])
        if mime_type is None and file_name:
            mime_type = mimetypes.guess_type(file_name)[0]
        extension = _extension(kind, mime_type, file_name)
        path = f"{FILE_FOLDERS.get(kind, 'documents')}/file_{n}{extension}"
        width, height = image_size(data) if kind == "photo" else (0, 0)
        stored = StoredFile(
            kind,
            data,
            file_id,
            unique,
            path,
            mime_type,
            file_name,
            declared_size,
            width,
            height,
            duration,
        )
        self.by_id[file_id] = stored
        self.by_path[path] = stored
        return stored


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _extension(kind: str, mime_type: str | None, file_name: str | None) -> str:
    if kind == "photo":
        return ".jpg"
    if kind == "voice":
        return ".oga"
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1]
    guessed = mimetypes.guess_extension(mime_type or "") if mime_type else None
    return guessed or ""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, GIF, JPEG or WebP image; (0, 0) when it is not one."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and data[12:16] == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return 0, 0


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return 0, 0
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return 0, 0


class BotState:
    """Everything a person (or the bot) could see, keyed the way the Bot API addresses it."""

    def __init__(self, bot: dict[str, Any]) -> None:
        self.bot = bot  # the User object getMe returns
        self.chats: dict[int, Chat] = {}
        self.users: dict[int, dict[str, Any]] = {bot["id"]: bot}
        self.messages: dict[tuple[int, int], Message] = {}
        self.drafts: dict[tuple[int, int | None, int], Draft] = {}
        self.callbacks: dict[str, CallbackQuery] = {}
        self.files = Files()
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}  # (scope, language)
        self.chat_actions: list[tuple[int, str, int | None]] = []
        self.admin_in: set[int] = set()  # chats where the bot is an administrator
        self._last_message_id: dict[int, int] = {}

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot as it appears in messages (``from``): getMe's capability flags left out."""
        return {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")}

    def add_chat(self, chat: Chat) -> Chat:
        self.chats.setdefault(chat.id, chat)
        return self.chats[chat.id]

    def learn(self, update: dict[str, Any]) -> None:
        """Know the chats, people and messages a raw (captured) update mentions, as Telegram
        does, so the bot can answer it and reply to it."""
        for body in update.values():
            if isinstance(body, dict):
                message = body.get("message") if "chat_instance" in body else body
                if isinstance(message, dict) and isinstance(message.get("chat"), dict):
                    self._learn_message(message)

    def _learn_message(self, raw: dict[str, Any]) -> Message:
        fields = {k: v for k, v in raw["chat"].items() if k in Chat.__dataclass_fields__}
        chat = self.add_chat(Chat(**fields))
        sender = raw.get("from") or {"id": chat.id, "is_bot": False, "first_name": ""}
        self.users.setdefault(sender["id"], sender)
        reply_to = raw.get("reply_to_message")
        known = self.messages.get((chat.id, raw["message_id"]))
        message = known or Message(
            chat,
            raw["message_id"],
            sender,
            int(raw.get("date", 0)),
            text=raw.get("text"),
            entities=list(raw.get("entities") or []),
            caption=raw.get("caption"),
            thread_id=raw.get("message_thread_id"),
            reply_markup=raw.get("reply_markup"),
        )
        if reply_to is not None and message.reply_to is None:
            message.reply_to = self._learn_message(reply_to)
        return self.store(message)

    def chat_by_username(self, username: str) -> Chat | None:
        wanted = username.lower()
        return next((c for c in self.chats.values() if (c.username or "").lower() == wanted), None)

    def new_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def store(self, message: Message) -> Message:
        self.messages[(message.chat.id, message.message_id)] = message
        last = self._last_message_id.get(message.chat.id, 0)
        self._last_message_id[message.chat.id] = max(last, message.message_id)
        return message

    def in_chat(self, chat_id: int, *, thread_id: int | None = None) -> list[Message]:
        """Messages in a chat (one topic when ``thread_id`` is given), oldest first."""
        return [
            m
            for (c, _), m in sorted(self.messages.items())
            if c == chat_id and (thread_id is None or m.thread_id == thread_id)
        ]

    def sent_by_bot(self, chat_id: int | None = None) -> list[Message]:
        return [
            m
            for m in sorted(self.messages.values(), key=lambda m: (m.chat.id, m.message_id))
            if m.from_bot and (chat_id is None or m.chat.id == chat_id)
        ]

    def supersede_drafts(self, chat_id: int, thread_id: int | None) -> None:
        """Clients drop a live draft when a real message arrives in the same chat and topic."""
        for (chat, thread, _), draft in self.drafts.items():
            if chat == chat_id and thread == thread_id:
                draft.superseded = True

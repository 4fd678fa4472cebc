"""What people do in Telegram, turned into the updates the Bot API hands the bot.

Shapes are the Bot API's (core.telegram.org/bots/api#update). Facts they rely on:
- commands and @mentions arrive with ``bot_command`` / ``mention`` entities (UTF-16 offsets);
- a photo arrives as several PhotoSize objects, smallest first: the original is the last;
- in a forum topic every message carries ``message_thread_id``, ``is_topic_message`` and, unless
  it replies to something else, a ``reply_to_message`` that is the topic's creation message;
- in groups with privacy mode on (the default) the bot only gets messages that start with "/",
  mention it, or reply to it (BotFather's /setprivacy text), plus everything where it is admin;
- callback query ids are numbers in a string, and a query must be answered within seconds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from tests.fakes.telegram_html import utf16_len
from tests.fakes.telegram_store import (
    GROUP,
    PRIVATE,
    SUPERGROUP,
    BotState,
    CallbackQuery,
    Chat,
    Message,
    StoredFile,
)
from tests.fakes.telegram_updates import UpdateQueue

ENTITY_PATTERNS = (
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}")),
)


def detect_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram adds to a text a person typed: commands and @mentions."""
    found = []
    for kind, pattern in ENTITY_PATTERNS:
        for match in pattern.finditer(text):
            found.append(
                {
                    "type": kind,
                    "offset": utf16_len(text[: match.start()]),
                    "length": utf16_len(match.group()),
                }
            )
    return sorted(found, key=lambda e: e["offset"])


class Inbound:
    """People, chats, and what they send; every update goes through ``queue``."""

    def __init__(
        self,
        state: BotState,
        queue: UpdateQueue,
        *,
        wall: Callable[[], float],
        clock: Callable[[], float],
        privacy: bool = True,
    ) -> None:
        self.state, self.queue, self.wall, self.clock = state, queue, wall, clock
        self.privacy = privacy
        self.hidden: list[dict[str, Any]] = []  # group messages privacy mode kept from the bot
        self._user_ids = itertools.count(1_000_001)
        self._group_ids = itertools.count(1)
        self._query_ids = itertools.count(4_382_000_000_000_000_001)

    # ---- people and chats ---------------------------------------------------------------

    def user(
        self,
        user_id: int | None = None,
        *,
        first_name: str = "Ada",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id or next(self._user_ids),
            "is_bot": False,
            "first_name": first_name,
        }
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self.state.users[user["id"]] = user
        return user

    def private_chat(self, user: dict[str, Any] | None = None) -> Chat:
        user = user or self.user()
        chat = Chat(
            user["id"],
            PRIVATE,
            first_name=user["first_name"],
            last_name=user.get("last_name"),
            username=user.get("username"),
        )
        return self.state.add_chat(chat)

    def group(
        self,
        title: str = "Dify fans",
        *,
        supergroup: bool = True,
        forum: bool = False,
        chat_id: int | None = None,
        bot_is_admin: bool = False,
    ) -> Chat:
        n = next(self._group_ids)
        default_id = -1_001_000_000_000 - n if supergroup else -4_000_000_000 - n
        chat = Chat(
            chat_id or default_id, SUPERGROUP if supergroup else GROUP, title=title, is_forum=forum
        )
        if bot_is_admin:
            self.state.admin_in.add(chat.id)
        if forum:  # message 1 opened the General topic (id 1), which takes no message_thread_id
            self.state.new_message_id(chat.id)
        return self.state.add_chat(chat)

    def topic(self, chat: Chat, name: str, *, by: dict[str, Any] | None = None) -> int:
        """Create a forum topic; its id is the id of its creation message."""
        creation = self._message(
            chat,
            by or self.user(),
            service={"forum_topic_created": {"name": name, "icon_color": 7322096}},
        )
        creation.thread_id = creation.message_id
        chat.topics.add(creation.message_id)
        return creation.message_id

    # ---- messages -----------------------------------------------------------------------

    def text(
        self,
        chat: Chat,
        text: str,
        *,
        user: dict[str, Any] | None = None,
        reply_to: Message | None = None,
        thread_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """A person sends ``text``; the update, or None when privacy mode hides it."""
        sender = user or self._default_sender(chat)
        message = self._message(
            chat,
            sender,
            text=text,
            reply_to=reply_to,
            thread_id=thread_id,
            entities=detect_entities(text) if entities is None else entities,
        )
        return self._deliver("message", message)

    def photo(
        self, chat: Chat, data: bytes, *, caption: str | None = None, **where: Any
    ) -> dict[str, Any] | None:
        original = self.state.files.add("photo", data)
        thumb = self.state.files.add("photo", b"thumbnail:" + data[:32])
        thumb.width, thumb.height = _scaled(original.width, original.height, 90)
        return self._media(chat, original, caption, thumbnails=[thumb], **where)

    def document(
        self,
        chat: Chat,
        data: bytes,
        *,
        file_name: str,
        mime_type: str | None = None,
        caption: str | None = None,
        declared_size: int | None = None,
        **where: Any,
    ) -> dict[str, Any] | None:
        stored = self.state.files.add(
            "document", data, file_name=file_name, mime_type=mime_type, declared_size=declared_size
        )
        return self._media(chat, stored, caption, **where)

    def voice(
        self, chat: Chat, data: bytes, *, duration: int = 3, **where: Any
    ) -> dict[str, Any] | None:
        stored = self.state.files.add("voice", data, mime_type="audio/ogg", duration=duration)
        return self._media(chat, stored, None, **where)

    def edit(self, message: Message, text: str) -> dict[str, Any] | None:
        message.text, message.entities = text, detect_entities(text)
        message.edit_date = int(self.wall())
        message.edits += 1
        return self._deliver("edited_message", message)

    def press(
        self, message: Message, data: str, *, user: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """A person presses the inline button carrying ``data`` under ``message``."""
        if data not in [b.get("callback_data") for b in message.buttons()]:
            raise AssertionError(f"message {message.message_id} has no button with data {data!r}")
        user = user or self._default_sender(message.chat)
        query = CallbackQuery(
            str(next(self._query_ids)),
            user,
            message.chat.id,
            message.message_id,
            data,
            self.clock(),
        )
        self.state.callbacks[query.id] = query
        body = {
            "id": query.id,
            "from": user,
            "message": message.shape(),
            "chat_instance": str(-abs(message.chat.id) * 7919 % 10**19),
            "data": data,
        }
        return self.queue.push({"callback_query": body})

    def stop_generation(
        self, chat: Chat, draft_id: int, *, thread_id: int | None = None
    ) -> dict[str, Any] | None:
        """The user presses the stop button of a draft sent with can_stop."""
        draft = self.state.drafts.get((chat.id, thread_id, draft_id))
        if draft is None or not draft.can_stop:
            raise AssertionError(f"no draft {draft_id} with a stop button in chat {chat.id}")
        body: dict[str, Any] = {"chat": chat.shape(), "draft_id": draft_id}
        if thread_id is not None:
            body["message_thread_id"] = thread_id
        return self.queue.push({"stopped_message_generation": body})

    def add_bot(self, chat: Chat, *, by: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Someone adds the bot to a group (my_chat_member)."""
        body = {
            "chat": chat.shape(),
            "from": by or self.user(),
            "date": int(self.wall()),
            "old_chat_member": {"user": self.state.bot_user, "status": "left"},
            "new_chat_member": {"user": self.state.bot_user, "status": "member"},
        }
        return self.queue.push({"my_chat_member": body})

    # ---- internals ----------------------------------------------------------------------

    def _default_sender(self, chat: Chat) -> dict[str, Any]:
        if chat.type == PRIVATE:
            return self.state.users.get(chat.id) or self.user(chat.id)
        return self.user()

    def _message(self, chat: Chat, sender: dict[str, Any], **fields: Any) -> Message:
        thread_id = fields.pop("thread_id", None)
        reply_to = fields.pop("reply_to", None)
        if thread_id is not None and chat.is_forum and reply_to is None:
            reply_to = self.state.messages.get((chat.id, thread_id))  # the topic's root
        message = Message(
            chat,
            self.state.new_message_id(chat.id),
            sender,
            int(self.wall()),
            reply_to=reply_to,
            thread_id=thread_id,
            **fields,
        )
        message.history.append(message.body)
        return self.state.store(message)

    def _media(
        self,
        chat: Chat,
        stored: StoredFile,
        caption: str | None,
        *,
        user: dict[str, Any] | None = None,
        reply_to: Message | None = None,
        thread_id: int | None = None,
        thumbnails: list[StoredFile] | None = None,
    ) -> dict[str, Any] | None:
        sender = user or self._default_sender(chat)
        message = self._message(
            chat,
            sender,
            media=stored,
            caption=caption,
            reply_to=reply_to,
            thread_id=thread_id,
            thumbnails=thumbnails or [],
            entities=detect_entities(caption or ""),
        )
        return self._deliver("message", message)

    def _deliver(self, kind: str, message: Message) -> dict[str, Any] | None:
        update = {kind: message.shape()}
        if not self._visible(message):
            self.hidden.append(update)
            return None
        return self.queue.push(update)

    def _visible(self, message: Message) -> bool:
        chat = message.chat
        if not chat.is_group or not self.privacy or chat.id in self.state.admin_in:
            return True
        body = message.body
        username = str(self.state.bot.get("username", ""))
        if body.startswith("/"):
            target = body.split(maxsplit=1)[0].partition("@")[2]
            return not target or target.lower() == username.lower()
        mentioned = re.search(rf"(?<![\w@])@{re.escape(username)}\b", body, re.IGNORECASE)
        replied = message.reply_to is not None and message.reply_to.from_bot
        return bool(mentioned) or replied


def _scaled(width: int, height: int, longest: int) -> tuple[int, int]:
    if not width or not height:
        return longest, longest
    ratio = longest / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))

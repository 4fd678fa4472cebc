"""What a person in Feishu would see: chats, messages as they are now (after edits, recalls and
reactions), threads, and the files the bot uploaded or users sent.

Facts used (open.feishu.cn server docs, im-v1): a message's ``content`` is a JSON string; text
bodies may be up to 150 KB and card/post bodies 30 KB; the same ``uuid`` within an hour sends
one message only; replying with ``reply_in_thread`` opens (or continues) a topic thread whose
``thread_id`` starts with ``omt_``; PATCH updates only ``interactive`` messages, 14 days at most;
images upload up to 10 MB, files up to 30 MB and never empty.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TEXT_LIMIT = 150 * 1024
CARD_LIMIT = 30 * 1024
IMAGE_LIMIT = 10 * 1024 * 1024
FILE_LIMIT = 30 * 1024 * 1024
UUID_WINDOW = 3600.0
FILE_TYPES = ("opus", "mp4", "pdf", "doc", "xls", "ppt", "stream")
RECEIVE_ID_TYPES = ("open_id", "union_id", "user_id", "email", "chat_id")


class FeishuError(Exception):
    """A refusal with Feishu's shape: HTTP status, ``code`` and ``msg`` (plus headers)."""

    def __init__(
        self, code: int, msg: str, *, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status = code, msg, status
        self.headers = headers or {}


def invalid(what: str) -> FeishuError:
    # 99992402 is the Open Platform's generic "field validation failed".
    return FeishuError(99992402, f"field validation failed: {what}")


@dataclass
class Media:
    data: bytes
    content_type: str = "application/octet-stream"
    file_name: str = ""
    kind: str = "file"  # "image" or "file" (the resource API's ``type``)


@dataclass
class FeishuMessage:
    message_id: str
    chat_id: str
    chat_type: str  # "p2p" or "group"
    msg_type: str
    content: dict[str, Any]
    sender_id: str  # the app's app_id, or a user's open_id
    sender_type: str = "app"  # "app" or "user"
    root_id: str = ""
    parent_id: str = ""
    thread_id: str = ""
    create_time: int = 0  # ms
    update_time: int = 0
    updated: bool = False
    deleted: bool = False
    uuid: str = ""
    mentions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier contents, oldest first
    reactions: dict[str, str] = field(default_factory=dict)  # reaction_id -> emoji_type

    @property
    def card_id(self) -> str:
        if self.msg_type == "interactive" and self.content.get("type") == "card":
            return str(self.content.get("data", {}).get("card_id", ""))
        return ""

    def to_api(self, *, app_id: str, tenant_key: str) -> dict[str, Any]:
        """The ``data`` object of a create/reply answer, as the docs show it."""
        sender = {"id": self.sender_id, "sender_type": self.sender_type, "tenant_key": tenant_key}
        sender["id_type"] = "app_id" if self.sender_type == "app" else "open_id"
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "msg_type": self.msg_type,
            "create_time": str(self.create_time),
            "update_time": str(self.update_time),
            "deleted": self.deleted,
            "updated": self.updated,
            "chat_id": self.chat_id,
            "sender": sender,
            "body": {"content": json.dumps(self.content, ensure_ascii=False)},
        }
        for name in ("root_id", "parent_id", "thread_id"):
            if getattr(self, name):
                data[name] = getattr(self, name)
        if self.mentions:
            data["mentions"] = self.mentions
        return data


class FeishuMessages:
    """Chats and messages. Every refusal is a :class:`FeishuError`."""

    def __init__(
        self, *, app_id: str, clock: Callable[[], float], wall: Callable[[], float]
    ) -> None:
        self.app_id = app_id
        self._clock, self._wall = clock, wall
        self.chats: dict[str, str] = {}  # chat_id -> "p2p" | "group"
        self.p2p: dict[str, str] = {}  # user open_id -> their p2p chat with the bot
        self.not_member: set[str] = set()  # group chats the bot was removed from
        self.messages: dict[str, FeishuMessage] = {}
        self.uploads: dict[str, Media] = {}  # image_key / file_key -> what was uploaded
        self.resources: dict[tuple[str, str], Media] = {}  # (message_id, key) -> a user's file
        self._uuids: dict[str, tuple[float, str]] = {}
        self._ids = itertools.count(1)

    # ---- ids ----------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(14)}"

    def p2p_chat(self, open_id: str) -> str:
        if open_id not in self.p2p:
            self.p2p[open_id] = chat_id = self.new_id("oc_")
            self.chats[chat_id] = "p2p"
        return self.p2p[open_id]

    def group_chat(self, chat_id: str | None = None) -> str:
        chat_id = chat_id or self.new_id("oc_")
        self.chats[chat_id] = "group"
        return chat_id

    # ---- what people do -----------------------------------------------------------------------

    def add(self, message: FeishuMessage) -> FeishuMessage:
        now = int(self._wall() * 1000)
        message.create_time = message.create_time or now
        message.update_time = message.update_time or message.create_time
        self.chats.setdefault(message.chat_id, message.chat_type)
        self.messages[message.message_id] = message
        return message

    def thread(self, thread_id: str) -> list[FeishuMessage]:
        return [m for m in self.messages.values() if m.thread_id == thread_id]

    def in_chat(self, chat_id: str) -> list[FeishuMessage]:
        return [m for m in self.messages.values() if m.chat_id == chat_id]

    def get(self, message_id: str) -> FeishuMessage:
        message = self.messages.get(message_id)
        if message is None:
            raise FeishuError(230001, f"invalid message_id: {message_id}")
        if message.deleted:
            raise FeishuError(230011, "The message was withdrawn.")
        return message

    # ---- the API ------------------------------------------------------------------------------

    def create(self, receive_id_type: str, body: dict[str, Any]) -> FeishuMessage:
        if receive_id_type not in RECEIVE_ID_TYPES:
            raise invalid("receive_id_type")
        receive_id = str(body.get("receive_id") or "")
        if not receive_id:
            raise invalid("receive_id")
        if receive_id_type == "chat_id":
            chat_id = receive_id
            if chat_id in self.not_member:
                raise FeishuError(230002, "Bot/User can NOT be out of the chat.")
            chat_type = self.chats.setdefault(chat_id, "group")
        else:
            chat_id, chat_type = self.p2p_chat(receive_id), "p2p"
        return self._send(body, chat_id=chat_id, chat_type=chat_type)

    def reply(self, message_id: str, body: dict[str, Any]) -> FeishuMessage:
        parent = self.get(message_id)
        if parent.chat_id in self.not_member:
            raise FeishuError(230002, "Bot/User can NOT be out of the chat.")
        thread_id = parent.thread_id
        if body.get("reply_in_thread") and not thread_id:
            # The replied-to message becomes the root of a new topic thread.
            thread_id = parent.thread_id = self.new_id("omt_")
        return self._send(
            body,
            chat_id=parent.chat_id,
            chat_type=parent.chat_type,
            root_id=parent.root_id or parent.message_id,
            parent_id=parent.message_id,
            thread_id=thread_id,
        )

    def patch(self, message_id: str, body: dict[str, Any]) -> FeishuMessage:
        message = self.get(message_id)
        if message.sender_type != "app" or message.sender_id != self.app_id:
            raise FeishuError(230027, "Lack of necessary permissions: not the sender.")
        if message.msg_type != "interactive":
            raise FeishuError(230001, "Only interactive (card) messages can be patched.")
        content = _parse_content(body.get("content"), "interactive")
        self._check_size("interactive", str(body["content"]))
        message.history.append(message.content)
        message.content, message.updated = content, True
        message.update_time = int(self._wall() * 1000)
        return message

    def delete(self, message_id: str) -> None:
        message = self.get(message_id)
        if message.sender_id != self.app_id:
            raise FeishuError(230027, "Lack of necessary permissions: not the sender.")
        message.deleted = True

    def react(self, message_id: str, emoji_type: str) -> str:
        message = self.get(message_id)
        reaction_id = self.new_id("r_")
        message.reactions[reaction_id] = emoji_type
        return reaction_id

    def unreact(self, message_id: str, reaction_id: str) -> str:
        message = self.get(message_id)
        if reaction_id not in message.reactions:
            raise FeishuError(231012, "The reaction does not exist.")
        return message.reactions.pop(reaction_id)

    def upload(self, media: Media) -> str:
        key = self.new_id("img_v3_" if media.kind == "image" else "file_v3_")
        self.uploads[key] = media
        return key

    def resource(self, message_id: str, key: str, kind: str) -> Media:
        self.get(message_id)
        media = self.resources.get((message_id, key))
        if media is None:
            raise FeishuError(234003, "File not in msg.")
        if kind != media.kind:
            raise FeishuError(234001, f"Invalid request param: type {kind} for a {media.kind}.")
        return media

    # ---- helpers ------------------------------------------------------------------------------

    def _send(
        self, body: dict[str, Any], *, chat_id: str, chat_type: str, **thread: str
    ) -> FeishuMessage:
        msg_type = str(body.get("msg_type") or "")
        raw = body.get("content")
        content = _parse_content(raw, msg_type)
        self._check_size(msg_type, str(raw))
        self._check_keys(msg_type, content)
        uuid = str(body.get("uuid") or "")
        if uuid:
            seen = self._uuids.get(uuid)
            if seen is not None and self._clock() - seen[0] < UUID_WINDOW:
                return self.messages[seen[1]]  # idempotent: the message sent the first time
        message = FeishuMessage(
            self.new_id("om_"), chat_id, chat_type, msg_type, content, self.app_id, uuid=uuid
        )
        for name, value in thread.items():
            setattr(message, name, value)
        if uuid:
            self._uuids[uuid] = (self._clock(), message.message_id)
        return self.add(message)

    def _check_size(self, msg_type: str, raw: str) -> None:
        limit = TEXT_LIMIT if msg_type == "text" else CARD_LIMIT
        if len(raw.encode()) > limit:
            raise FeishuError(230025, "The message content exceeds the length limit.")

    def _check_keys(self, msg_type: str, content: dict[str, Any]) -> None:
        wanted = {"image": ["image_key"], "file": ["file_key"], "audio": ["file_key"],
                  "media": ["file_key"]}.get(msg_type, [])  # fmt: skip
        for name in wanted:
            if content.get(name) not in self.uploads:
                raise FeishuError(230001, f"invalid {name}: not uploaded by this app")


def _parse_content(raw: Any, msg_type: str) -> dict[str, Any]:
    kinds = ("text", "post", "image", "file", "audio", "media", "sticker", "interactive",
             "share_chat", "share_user")  # fmt: skip
    if msg_type not in kinds:
        raise invalid("msg_type")
    if not isinstance(raw, str):
        raise invalid("content must be a JSON string")
    try:
        content = json.loads(raw)
    except ValueError:
        raise FeishuError(230001, "invalid message content: not JSON") from None
    if not isinstance(content, dict):
        raise FeishuError(230001, "invalid message content: not an object")
    if msg_type == "text" and not isinstance(content.get("text"), str):
        raise FeishuError(230001, "invalid message content: text")
    if msg_type == "interactive" and content.get("type") != "card":
        check_forms(content)
    return content


FORM_INPUTS = ("input", "select_static", "multi_select_static", "select_person",
               "multi_select_person", "date_picker", "picker_time", "picker_datetime",
               "select_img", "checker", "button")  # fmt: skip


def check_forms(card: dict[str, Any]) -> None:
    """Card JSON 2.0 form containers ("表单容器"): a ``form`` sits only at the body's root (not
    in another component, not in a form), and every interactive component in it has a ``name``,
    unique in the card (its key in ``form_value``). Else the card is refused."""
    body = card.get("body")
    root = body.get("elements") if isinstance(body, dict) else None
    names: set[str] = set()

    def walk(node: Any, *, in_form: bool, at_root: bool) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, in_form=in_form, at_root=at_root)
            return
        if not isinstance(node, dict):
            return
        tag = node.get("tag")
        if tag == "form" and (in_form or not at_root):
            raise FeishuError(230099, "Failed to create card content: a form must be at the root")
        if in_form and tag in FORM_INPUTS:
            name = node.get("name")
            if not isinstance(name, str) or not name or name in names:
                raise FeishuError(230099, f"Failed to create card content: {tag} in a form "
                                  "needs a name unique in the card")  # fmt: skip
            names.add(name)
        for key, value in node.items():
            if key not in ("config", "behaviors", "value"):
                walk(value, in_form=in_form or tag == "form", at_root=False)

    if isinstance(root, list):
        for element in root:
            walk(element, in_form=False, at_root=True)


def text_of(content: dict[str, Any]) -> str:
    """The words a person reads in a text, post or inline-card body."""
    if isinstance(content.get("text"), str):
        return str(content["text"])
    post = content.get("content") if "content" in content else None
    if post is None:
        for value in content.values():  # {"zh_cn": {"title": ..., "content": [[...]]}}
            if isinstance(value, dict) and "content" in value:
                post = value["content"]
    if isinstance(post, list):
        return "\n".join(
            "".join(str(run.get("text", "")) for run in line if isinstance(run, dict))
            for line in post
            if isinstance(line, list)
        )
    return "\n".join(card_texts(content))


def card_texts(card: dict[str, Any]) -> list[str]:
    """markdown / plain_text / div contents of a card (1.0 or 2.0), in order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") in ("markdown", "plain_text", "lark_md") and "content" in node:
                found.append(str(node["content"]))
                return
            for key, value in node.items():
                if key not in ("header", "config"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card.get("body", card.get("elements", card)))
    return found

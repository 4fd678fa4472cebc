"""DingTalk robot callbacks normalized: the same JSON arrives by HTTP (``POST /dingtalk``) and over
Stream mode (topic ``/v1.0/im/bot/messages/get``).

Facts it relies on (docs "接收消息", dingtalk-stream's ``ChatbotMessage``): ``conversationType``
"1" is a single chat, "2" a group, where only messages that @ the robot arrive, the robot's name
already cut out of ``text.content`` (a leading space stays). ``senderStaffId`` is absent for a
sender from another organisation; ``senderId`` is always there. Voice arrives transcribed
(``content.recognition``); pictures and files carry a ``downloadCode`` for the robot's file API.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from typing import Any

from bot.errors import CallbackRejected
from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "dingtalk"


@dataclass(frozen=True, slots=True)
class RobotMessage:
    """One robot callback, as much of it as difybot uses."""

    msg_id: str
    kind: str  # text, richText, picture, file, audio, video, ...
    group: bool
    conversation_id: str  # the openConversationId of a group; a single chat's own id
    corp_id: str  # the robot's organisation
    sender_id: str  # staff id when the sender is in the organisation, else DingTalk's senderId
    staff_id: str
    nick: str
    text: str
    session_webhook: str
    session_expires: float  # Unix seconds
    files: tuple[Attachment, ...] = ()


def to_robot_message(payload: Any) -> RobotMessage:
    """The callback's fields; 400 when it is not the JSON object DingTalk sends."""
    if not isinstance(payload, dict) or not payload.get("msgId") or not payload.get("msgtype"):
        raise CallbackRejected("DingTalk callback without msgId or msgtype", status=400)
    staff_id = str(payload.get("senderStaffId") or "")
    sender_id = staff_id or str(payload.get("senderId") or "")
    if not sender_id or not payload.get("conversationId"):
        raise CallbackRejected("DingTalk callback without sender or conversation", status=400)
    kind = str(payload["msgtype"])
    text, files = _content(kind, payload)
    expires = payload.get("sessionWebhookExpiredTime")
    return RobotMessage(
        msg_id=str(payload["msgId"]),
        kind=kind,
        group=str(payload.get("conversationType")) == "2",
        conversation_id=str(payload["conversationId"]),
        corp_id=str(payload.get("chatbotCorpId") or ""),
        sender_id=sender_id,
        staff_id=staff_id,
        nick=str(payload.get("senderNick") or ""),
        text=text.strip(),
        session_webhook=str(payload.get("sessionWebhook") or ""),
        session_expires=expires / 1000 if isinstance(expires, int | float) else 0.0,
        files=files,
    )


def _section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    part = payload.get(name)
    return part if isinstance(part, dict) else {}


def _content(kind: str, payload: dict[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    content = _section(payload, "content")
    if kind == "text":
        return str(_section(payload, "text").get("content") or ""), ()
    if kind == "audio":  # already transcribed by DingTalk
        return str(content.get("recognition") or ""), ()
    if kind == "richText":
        items = [i for i in content.get("richText") or () if isinstance(i, dict)]
        texts = [str(i["text"]) for i in items if isinstance(i.get("text"), str)]
        pictures = [_picture(i) for i in items if i.get("type") == "picture"]
        return "\n".join(texts), tuple(p for p in pictures if p is not None)
    if kind == "picture":
        picture = _picture(content)
        return "", (picture,) if picture is not None else ()
    if kind in ("file", "video"):
        code = str(content.get("downloadCode") or "")
        default = f"video.{content.get('videoType') or 'mp4'}" if kind == "video" else "file"
        name = str(content.get("fileName") or default)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return "", (Attachment(name=name, mime_type=mime, platform_id=code),) if code else ()
    return "", ()


def _picture(item: dict[str, Any]) -> Attachment | None:
    code = str(item.get("downloadCode") or item.get("pictureDownloadCode") or "")
    return (
        Attachment(name="picture.jpg", mime_type="image/jpeg", platform_id=code) if code else None
    )


def to_incoming(message: RobotMessage, *, per_user: bool, locale: str) -> IncomingMessage:
    """A single chat is its sender's conversation. A group is one conversation, its Dify user
    the group's (every member continues it), unless ``per_user``: then one per member there."""
    if message.group and not per_user:
        scope, scope_id, user_id = Scope.CHANNEL, message.conversation_id, message.conversation_id
    elif message.group:
        scope, scope_id = Scope.USER, f"{message.sender_id}@{message.conversation_id}"
        user_id = message.sender_id
    else:
        scope, scope_id, user_id = Scope.USER, message.sender_id, message.sender_id
    key = ConversationKey(PLATFORM, message.corp_id, scope, scope_id)
    return IncomingMessage(
        platform=PLATFORM,
        workspace=message.corp_id,
        user_id=user_id,
        text=message.text,
        key=key,
        message_id=message.msg_id,
        attachments=message.files,
        locale=locale,
        user_name=message.nick or None,
        channel_id=message.conversation_id if message.group else None,
        author_id=message.sender_id if user_id != message.sender_id else "",
    )


def to_where(message: RobotMessage) -> dict[str, Any]:
    """Where the answer goes, JSON-safe (the journal keeps it for whoever answers)."""
    return {
        "group": message.group,
        "conversation_id": message.conversation_id,
        "staff_id": message.staff_id,
        "sender_id": message.sender_id,
        "session_webhook": message.session_webhook,
        "session_expires": message.session_expires,
    }


@dataclass(frozen=True, slots=True)
class CardAction:
    """A click on an AI card's button (Stream topic ``/v1.0/card/instances/callback``): which
    button (``actionIds``) with which ``params``, by whom, on which card, in which chat."""

    action: str
    params: dict[str, str]
    user_id: str
    corp_id: str
    group: bool
    space_id: str  # the group's openConversationId, or the single chat's staff id
    out_track_id: str

    def to_robot_message(self, msg_id: str, text: str) -> RobotMessage:
        """The click as a message from its user in the card's chat (no session webhook)."""
        conversation = self.space_id if self.group else self.user_id
        return RobotMessage(msg_id, "card", self.group, conversation, self.corp_id,
                            self.user_id, self.user_id, "", text, "", 0.0)  # fmt: skip


def to_card_action(payload: Any) -> CardAction:
    """A card callback (``content`` is a JSON string, as dingtalk-stream's
    ``CardCallbackMessage`` reads it); 400 when it is not one."""
    if not isinstance(payload, dict) or not payload.get("userId") or not payload.get("spaceId"):
        raise CallbackRejected("card callback without user or space", status=400)
    try:
        content = json.loads(str(payload.get("content") or "{}"))
    except ValueError:
        raise CallbackRejected("card callback content is not JSON", status=400) from None
    private = content.get("cardPrivateData") if isinstance(content, dict) else None
    private = private if isinstance(private, dict) else {}
    actions = private.get("actionIds") or []
    params = private.get("params")
    params = params if isinstance(params, dict) else {}
    return CardAction(
        action=str(actions[0]) if actions else "",
        params={str(k): str(v) for k, v in params.items()},
        user_id=str(payload["userId"]),
        corp_id=str(payload.get("corpId") or ""),
        group=payload.get("spaceType") == "IM_GROUP",
        space_id=str(payload["spaceId"]),
        out_track_id=str(payload.get("outTrackId") or ""),
    )

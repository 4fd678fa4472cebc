"""XML pushes (Official Account and WeCom app) normalized: ``Push`` in, ``IncomingMessage`` out."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import CallbackRejected
from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

# Kinds whose words we can put to Dify; an image goes as an attachment, voice via speech-to-text.
TEXT_KINDS = frozenset({"text", "link", "location"})


@dataclass(frozen=True, slots=True)
class Push:
    """One pushed message or event, whatever the surface."""

    kind: str  # MsgType: text, image, voice, video, shortvideo, location, link, file, event
    msg_id: str  # MsgId; events have none, so FromUserName + CreateTime (WeChat's advice)
    user_id: str  # FromUserName: OpenID (OA) or UserID (WeCom)
    account: str  # ToUserName: the account's original id gh_… (OA) or the CorpID (WeCom)
    create_time: int
    text: str = ""  # the words: Content, Recognition, a link's title and address, a place
    media_id: str = ""
    pic_url: str = ""
    voice_format: str = ""
    event: str = ""  # lowercased Event
    agent_id: str = ""


def to_push(fields: dict[str, str]) -> Push:
    """Normalize a decrypted XML push; 400 when it lacks what every push has."""
    kind, user = fields.get("MsgType", "").lower(), fields.get("FromUserName", "")
    if not kind or not user:
        raise CallbackRejected("push without MsgType or FromUserName", status=400)
    created = fields.get("CreateTime", "0")
    return Push(
        kind=kind,
        msg_id=fields.get("MsgId") or fields.get("MsgID") or f"{user}:{created}",
        user_id=user,
        account=fields.get("ToUserName", ""),
        create_time=int(created) if created.isascii() and created.isdigit() else 0,  # not "²"
        text=_words(kind, fields),
        media_id=fields.get("MediaId", ""),
        pic_url=fields.get("PicUrl", ""),
        voice_format=fields.get("Format", "").lower(),
        event=fields.get("Event", "").lower(),
        agent_id=fields.get("AgentID", ""),
    )


def _words(kind: str, fields: dict[str, str]) -> str:
    if kind == "text":
        return fields.get("Content", "")
    if kind == "voice":  # empty unless "接收语音识别结果" is on, and sometimes even then
        return fields.get("Recognition", "")
    if kind == "link":
        parts = (fields.get("Title", ""), fields.get("Description", ""), fields.get("Url", ""))
        return "\n".join(p for p in parts if p)
    if kind == "location":
        where = f"({fields.get('Location_X', '')}, {fields.get('Location_Y', '')})"
        return f"{fields.get('Label', '')} {where}".strip()
    return ""


def refusal(push: Push, *, downloads: bool) -> str | None:
    """The text key to answer a push Dify cannot be asked about with, else None. Images and
    voice without WeChat's transcript need the media API (``downloads``)."""
    if push.kind in TEXT_KINDS or push.text:
        return None
    if push.kind == "image" and (push.pic_url or (push.media_id and downloads)):
        return None
    if push.kind == "voice":
        return None if push.media_id and downloads else "voice_failed"
    return "wechat_unsupported"


def attachments_of(push: Push) -> tuple[Attachment, ...]:
    """An image, or a voice message WeChat did not transcribe, as an attachment for the
    attachments pipeline (media id and direct URL); voice goes through Dify's speech-to-text."""
    if push.kind == "image":
        name = f"{push.media_id or push.msg_id}.jpg"
        return (
            Attachment(
                name=name,
                mime_type="image/jpeg",
                url=push.pic_url or None,
                platform_id=push.media_id or None,
            ),
        )
    if push.kind == "voice" and not push.text and push.media_id:
        declared = push.voice_format or "amr"
        return (
            Attachment(
                name=f"{push.media_id}.{declared}",
                mime_type=f"audio/{declared}",
                platform_id=push.media_id,
                voice=True,
            ),
        )
    return ()


def to_incoming(push: Push, *, platform: str, workspace: str, locale: str) -> IncomingMessage:
    """The core's message: one conversation per user (WeChat chats are one-to-one)."""
    key = ConversationKey(
        platform=platform, workspace=workspace, scope=Scope.USER, scope_id=push.user_id
    )
    return IncomingMessage(
        platform=platform,
        workspace=workspace,
        user_id=push.user_id,
        text=push.text,
        key=key,
        message_id=push.msg_id,
        attachments=attachments_of(push),
        locale=locale,
    )

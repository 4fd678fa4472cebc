"""LINE webhook events normalized: who asked where, what they asked, what a button meant.

Pure functions over the parsed body (``tests/payloads/line/`` holds captured ones). A group or
room message is for the bot only when one of its mentionees ``isSelf``; the mention is cut out
of the text by its ``index``/``length``, which count UTF-16 code units (LINE's servers are
Java), so an emoji before it shifts Python's string index. Every event has a ``webhookEventId``
(a ULID) that a redelivery repeats: it is the message's id in the journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "line"
ACTION_PREFIX = "dify:"
MAX_POSTBACK_DATA = 300  # characters of a postback action's data

# What a LINE file of each kind is called when it reaches Dify (LINE names only ``file``s).
_MEDIA = {
    "image": ("image", ".jpg", "image/jpeg"),
    "video": ("video", ".mp4", "video/mp4"),
    "audio": ("voice", ".m4a", "audio/x-m4a"),
}


@dataclass(frozen=True, slots=True)
class Chat:
    """Where an event happened: ``kind`` user/group/room, ``id`` where answers go (the user in
    a 1:1 chat, else the group or room), ``user`` who acted (may be empty in a group)."""

    kind: str
    id: str
    user: str

    @property
    def is_group(self) -> bool:
        return self.kind != "user"


@dataclass(frozen=True, slots=True)
class Ask:
    """A quick reply that asks a (suggested) question."""

    question: str


@dataclass(frozen=True, slots=True)
class Rate:
    """A quick reply that rates an answer (Dify message feedback) as the Dify ``user`` it was
    given to: in a group anyone may tap it."""

    rating: str  # like | dislike
    message_id: str
    app: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class FormChoice:
    """A quick reply that answers a Dify Human Input form (``ref``, the core's name for it)
    with one of its actions (Dify's action id)."""

    ref: str
    action: str


# A decoded postback.
Action = Ask | Rate | FormChoice


@dataclass(frozen=True, slots=True)
class LineEvent:
    """One webhook event as the adapter handles it; ``kind`` is ``message``, ``postback``,
    ``follow`` (added as a friend, or unblocked) or ``other`` (join, unsend…: acknowledged,
    nothing answered)."""

    kind: str  # message, postback, follow, other
    event_id: str
    chat: Chat
    reply_token: str = ""
    redelivery: bool = False
    timestamp_ms: int = 0
    message: dict[str, Any] | None = None
    postback: str = ""


def to_events(body: Any) -> tuple[str, list[LineEvent]]:
    """``(destination, events)`` of a webhook body; ValueError when it is not LINE's shape. An
    empty ``events`` list is LINE's "Verify" button in the console."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ValueError("not a LINE webhook body")
    destination = body.get("destination")
    if not isinstance(destination, str):
        raise ValueError("webhook body without destination")
    return destination, [to_event(event) for event in body["events"]]


def to_event(event: Any) -> LineEvent:
    if not isinstance(event, dict) or not isinstance(event.get("webhookEventId"), str):
        raise ValueError("event without webhookEventId")
    kind = str(event.get("type") or "")
    message = event.get("message") if kind == "message" else None
    postback = event.get("postback") if kind == "postback" else None
    context = event.get("deliveryContext")
    # "standby": another channel of the account (a Module channel) is answering this chat.
    active = event.get("mode", "active") == "active"
    return LineEvent(
        kind=kind if active and kind in ("message", "postback", "follow") else "other",
        event_id=event["webhookEventId"],
        chat=_chat(event.get("source")),
        reply_token=str(event.get("replyToken") or ""),
        redelivery=bool(isinstance(context, dict) and context.get("isRedelivery")),
        timestamp_ms=_int(event.get("timestamp")),
        message=message if isinstance(message, dict) else None,
        postback=str(postback.get("data") or "") if isinstance(postback, dict) else "",
    )


def _chat(source: Any) -> Chat:
    if not isinstance(source, dict):
        raise ValueError("event without source")
    kind = str(source.get("type") or "")
    user = str(source.get("userId") or "")
    place = {"user": user, "group": source.get("groupId"), "room": source.get("roomId")}.get(kind)
    if not isinstance(place, str) or not place:
        raise ValueError(f"event source {kind!r} without its id")
    return Chat(kind, place, user)


def to_incoming(
    event: LineEvent, *, bot: str, per_user: bool = False, locale: str | None = None
) -> IncomingMessage | None:
    """The question a message event asks, or None when it asks nothing of the bot: a group
    message that does not mention it, a sticker, a location, an unsend."""
    message = event.message or {}
    kind = str(message.get("type") or "")
    if kind == "text":
        text = str(message.get("text") or "")
        if event.chat.is_group:
            if not is_for_bot(message):
                return None
            text = without_mentions(text, message)
        return _incoming(event, text.strip(), (), bot=bot, per_user=per_user, locale=locale)
    attachment = to_attachment(message)
    if attachment is None or event.chat.is_group:
        return None  # a file in a group cannot mention the bot: it is not for the bot
    return _incoming(event, "", (attachment,), bot=bot, per_user=per_user, locale=locale)


def asked(
    event: LineEvent, question: str, *, bot: str, per_user: bool = False, locale: str | None = None
) -> IncomingMessage:
    """A question asked by a quick reply, as if typed by whoever tapped it."""
    return _incoming(event, question, (), bot=bot, per_user=per_user, locale=locale)


def _incoming(
    event: LineEvent,
    text: str,
    attachments: tuple[Attachment, ...],
    *,
    bot: str,
    per_user: bool,
    locale: str | None,
) -> IncomingMessage:
    chat = event.chat
    if not chat.is_group:
        scope, scope_id, user, author = Scope.USER, chat.id, chat.id, ""
    elif per_user:
        scope, scope_id, user, author = Scope.USER, f"{chat.user}@{chat.id}", chat.user, ""
    else:  # one conversation for the group: Dify's user is the group, the author who wrote
        scope, scope_id, user, author = Scope.CHANNEL, chat.id, chat.id, chat.user
    key = ConversationKey(platform=PLATFORM, workspace=bot, scope=scope, scope_id=scope_id)
    return IncomingMessage(
        platform=PLATFORM,
        workspace=bot,
        user_id=user,
        text=text,
        key=key,
        message_id=event.event_id,
        attachments=attachments,
        locale=locale,
        channel_id=chat.id if chat.is_group else None,
        author_id=author,
    )


def is_for_bot(message: dict[str, Any]) -> bool:
    return any(m.get("isSelf") is True for m in _mentionees(message))


def without_mentions(text: str, message: dict[str, Any]) -> str:
    """The text with the bot's own mentions cut out (UTF-16 offsets, each with the space after
    it), others and the text's own line breaks left in place."""
    units = text.encode("utf-16-le")
    spans = sorted(
        (_int(m.get("index")), _int(m.get("length")))
        for m in _mentionees(message)
        if m.get("isSelf") is True
    )
    for index, length in reversed(spans):
        end = 2 * (index + length)
        if units[end : end + 2] in (" ".encode("utf-16-le"), "\u3000".encode("utf-16-le")):
            end += 2
        units = units[: 2 * index] + units[end:]
    return units.decode("utf-16-le", errors="replace").strip()


def _int(value: Any) -> int:
    """A count LINE sends as a JSON integer; anything else counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _mentionees(message: dict[str, Any]) -> list[dict[str, Any]]:
    mention = message.get("mention")
    found = mention.get("mentionees") if isinstance(mention, dict) else None
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else []


def to_attachment(message: dict[str, Any]) -> Attachment | None:
    """A file the user sent, fetched later from the content API by its message id (or, for an
    image another service hosts, from its URL)."""
    kind, message_id = str(message.get("type") or ""), str(message.get("id") or "")
    if kind == "file":
        size = message.get("fileSize")
        name = str(message.get("fileName") or f"file-{message_id}")
        return Attachment(
            name=name, mime_type="application/octet-stream", platform_id=message_id,
            size=size if isinstance(size, int) else None,
        )  # fmt: skip
    if kind not in _MEDIA:
        return None
    stem, suffix, mime = _MEDIA[kind]
    provider = message.get("contentProvider")
    if isinstance(provider, dict) and provider.get("type") == "external":
        url = str(provider.get("originalContentUrl") or "")
        return Attachment(name=f"{stem}-{message_id}{suffix}", mime_type=mime, url=url)
    return Attachment(
        name=f"{stem}-{message_id}{suffix}", mime_type=mime, platform_id=message_id,
        voice=kind == "audio",
    )  # fmt: skip


# ---- postback data: what a quick reply means ----------------------------------------------------


def to_action(data: str) -> Action | None:
    """``dify:ask:<question>``, ``dify:feedback:<like|dislike>:<message id>[|<user>|<app>]`` or
    ``dify:form:<ref>:<action id>``; None for anything else (another service's rich menu, a
    forged or stale button)."""
    if not data.startswith(ACTION_PREFIX):
        return None
    kind, _, rest = data[len(ACTION_PREFIX) :].partition(":")
    if kind == "ask" and rest.strip():
        return Ask(rest.strip())
    if kind == "feedback":
        rating, _, rest = rest.partition(":")
        message_id, _, rest = rest.partition("|")
        user, _, app = rest.partition("|")
        if rating in ("like", "dislike") and message_id:
            return Rate(rating, message_id, app, user)
    if kind == "form":
        ref, _, action = rest.partition(":")  # a ref is URL-safe base64: never a colon
        if ref and action:
            return FormChoice(ref, action)
    return None


def to_data(action: Action) -> str:
    """The postback data of an action (at most 300 characters: a long question is cut; a form
    action too long for it is not offered, see ``messages.form_buttons``)."""
    if isinstance(action, Ask):
        return f"{ACTION_PREFIX}ask:{action.question}"[:MAX_POSTBACK_DATA]
    if isinstance(action, FormChoice):  # never cut: a cut action id would answer another one
        return f"{ACTION_PREFIX}form:{action.ref}:{action.action}"
    who = f"|{action.user}|{action.app}" if action.user or action.app else ""
    return f"{ACTION_PREFIX}feedback:{action.rating}:{action.message_id}{who}"

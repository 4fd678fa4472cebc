"""Inbound LINE: webhook bodies built the way the LINE Platform sends them, signed with
``X-Line-Signature`` = base64(HMAC-SHA256(channel secret, raw body)), and posted to a webhook URL.

Event shapes follow the Messaging API reference (#webhook-event-objects) and line-openapi's
``webhook.yml``: every event has ``type``, ``mode``, ``timestamp`` (ms), ``webhookEventId`` (a
ULID) and ``deliveryContext.isRedelivery``; sources are ``user`` / ``group`` (``groupId``) /
``room`` (``roomId``), with the sender's ``userId``. A redelivery is the same event (same
``webhookEventId``, same reply token, by then usually spent or expired) with ``isRedelivery: true``.
Mention ``index``/``length`` count UTF-16 code units, as LINE's (Java) servers do.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

CHANNEL_ID = "2000000001"
CHANNEL_SECRET = "8c5b2a1f9d3e4c7b6a5f4e3d2c1b0a99"  # 32 hex digits, like the console shows
BOT_USER_ID = "U" + "d1f7b0e2a3c4" * 2 + "5b6a7c8d"  # U + 32 hex: the bot's own user ID
BOT_NAME = "Dify Bot"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

Event = dict[str, Any]


def sign(body: bytes, secret: str = CHANNEL_SECRET) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def ulid(ms: int) -> str:
    """A ULID: 48-bit millisecond time and 80 random bits, Crockford base32 (26 characters)."""
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class LineEvents:
    """Builds events for one channel. Bound to a ``FakeLine`` (``fake.events``), its reply tokens
    are the fake's, its users/groups can be pushed to and files it sends can be downloaded."""

    def __init__(
        self,
        *,
        channel_secret: str = CHANNEL_SECRET,
        destination: str = BOT_USER_ID,
        reply_tokens: Callable[[str], str] | None = None,
        on_chat: Callable[[str, dict[str, Any] | None], None] | None = None,
        on_content: Callable[..., None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.channel_secret, self.destination = channel_secret, destination
        self._reply_tokens = reply_tokens or (lambda chat: secrets.token_hex(16))
        self._on_chat = on_chat or (lambda chat, profile: None)
        self._on_content = on_content
        self._now = now
        self._message_ids = itertools.count(500_000_000_000_000_001)

    # ---- who talks -----------------------------------------------------------------------

    def user(self, name: str = "Aiko", *, language: str = "ja") -> str:
        user = "U" + secrets.token_hex(16)
        profile = {"userId": user, "displayName": name, "language": language,
                   "pictureUrl": f"https://profile.line-scdn.net/{user}"}  # fmt: skip
        self._on_chat(user, profile)
        return user

    def group(self) -> str:
        return self._chat("C")

    def room(self) -> str:
        return self._chat("R")

    def _chat(self, prefix: str) -> str:
        chat = prefix + secrets.token_hex(16)
        self._on_chat(chat, None)
        return chat

    # ---- events ---------------------------------------------------------------------------

    def text(
        self,
        text: str,
        *,
        user: str,
        chat: str | None = None,
        mentions: Sequence[dict[str, Any]] = (),
        quoted: str | None = None,
    ) -> Event:
        """A text message; ``chat`` is a group (C…) or room (R…) ID, or None for the 1:1 chat."""
        message: dict[str, Any] = {"type": "text", "text": text}
        if mentions:
            message["mention"] = {"mentionees": list(mentions)}
        if quoted is not None:
            message["quotedMessageId"] = quoted
        return self.message(message, user=user, chat=chat)

    def mention(
        self, text: str, label: str = f"@{BOT_NAME}", *, user: str | None = None
    ) -> dict[str, Any]:
        """The mentionee for ``label`` in ``text``: the bot itself unless ``user`` is given."""
        start = text.index(label)
        mentionee: dict[str, Any] = {
            "index": utf16_len(text[:start]), "length": utf16_len(label), "type": "user",
            "userId": user or self.destination, "isSelf": user is None,
        }  # fmt: skip
        return mentionee

    @staticmethod
    def mention_all(text: str, label: str = "@All") -> dict[str, Any]:
        start = text.index(label)
        return {"index": utf16_len(text[:start]), "length": utf16_len(label), "type": "all"}

    def image(
        self,
        *,
        user: str,
        chat: str | None = None,
        data: bytes | None = None,
        external: str | None = None,
        image_set: tuple[str, int, int] | None = None,
    ) -> Event:
        provider: dict[str, Any] = {"type": "line"}
        if external is not None:
            provider = {"type": "external", "originalContentUrl": external,
                        "previewImageUrl": external}  # fmt: skip
        message: dict[str, Any] = {"type": "image", "contentProvider": provider}
        if image_set is not None:
            message["imageSet"] = dict(zip(("id", "index", "total"), image_set, strict=True))
        return self._media(message, data, "image/jpeg", user=user, chat=chat)

    def audio(self, *, user: str, chat: str | None = None, data: bytes | None = None,
              duration_ms: int = 4000) -> Event:  # fmt: skip
        message = {"type": "audio", "duration": duration_ms, "contentProvider": {"type": "line"}}
        return self._media(message, data, "audio/x-m4a", user=user, chat=chat)

    def video(self, *, user: str, chat: str | None = None, data: bytes | None = None,
              duration_ms: int = 8000) -> Event:  # fmt: skip
        message = {"type": "video", "duration": duration_ms, "contentProvider": {"type": "line"}}
        return self._media(message, data, "video/mp4", user=user, chat=chat)

    def file(self, name: str, *, user: str, chat: str | None = None, data: bytes = b"") -> Event:
        message = {"type": "file", "fileName": name, "fileSize": len(data)}
        return self._media(message, data, "application/octet-stream", user=user, chat=chat)

    def sticker(self, *, user: str, chat: str | None = None, keywords: Sequence[str] = ()) -> Event:
        message = {"type": "sticker", "packageId": "446", "stickerId": "1988",
                   "stickerResourceType": "STATIC", "keywords": list(keywords)}  # fmt: skip
        return self.message(message, user=user, chat=chat)

    def location(self, *, user: str, chat: str | None = None) -> Event:
        message = {"type": "location", "title": "Tokyo Tower", "address": "4-2-8 Shibakoen",
                   "latitude": 35.65858, "longitude": 139.745433}  # fmt: skip
        return self.message(message, user=user, chat=chat)

    def message(self, message: dict[str, Any], *, user: str, chat: str | None = None) -> Event:
        message = {**message, "id": str(next(self._message_ids))}
        if message["type"] in ("text", "image", "video", "sticker"):
            message["quoteToken"] = secrets.token_urlsafe(24)
        return self._event("message", user, chat, message=message, replyable=True)

    def postback(self, data: str, *, user: str, chat: str | None = None,
                 params: dict[str, str] | None = None) -> Event:  # fmt: skip
        postback: dict[str, Any] = {"data": data, **({"params": params} if params else {})}
        return self._event("postback", user, chat, postback=postback, replyable=True)

    def follow(self, *, user: str, unblocked: bool = False) -> Event:
        return self._event("follow", user, None, follow={"isUnblocked": unblocked}, replyable=True)

    def unfollow(self, *, user: str) -> Event:
        return self._event("unfollow", user, None)

    def join(self, *, chat: str) -> Event:
        return self._event("join", None, chat, replyable=True)

    def leave(self, *, chat: str) -> Event:
        return self._event("leave", None, chat)

    def unsend(self, message_id: str, *, user: str, chat: str | None = None) -> Event:
        return self._event("unsend", user, chat, unsend={"messageId": message_id})

    @staticmethod
    def redelivered(event: Event) -> Event:
        """The same event sent again by LINE's webhook redelivery (same ID and reply token)."""
        again = copy.deepcopy(event)
        again["deliveryContext"] = {"isRedelivery": True}
        return again

    def _media(self, message: dict[str, Any], data: bytes | None, content_type: str, *,
               user: str, chat: str | None) -> Event:  # fmt: skip
        event = self.message(message, user=user, chat=chat)
        if data is not None and self._on_content is not None:
            self._on_content(event["message"]["id"], data, content_type)
        return event

    def _event(self, kind: str, user: str | None, chat: str | None, *, replyable: bool = False,
               **fields: Any) -> Event:  # fmt: skip
        ms = int(self._now() * 1000)
        event: Event = {"type": kind, **fields, "webhookEventId": ulid(ms),
                        "deliveryContext": {"isRedelivery": False}, "timestamp": ms,
                        "source": _source(user, chat), "mode": "active"}  # fmt: skip
        if replyable:
            event["replyToken"] = self._reply_tokens(chat or user or "")
        return event

    # ---- bodies and delivery --------------------------------------------------------------

    def body(self, *events: Event) -> bytes:
        """The raw body: UTF-8 as sent (Japanese stays unescaped), which the signature covers."""
        payload = {"destination": self.destination, "events": list(events)}
        return json.dumps(payload, ensure_ascii=False).encode()

    def headers(self, body: bytes, *, signature: str | None = None) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "LineBotWebhook/2.0",
            "X-Line-Signature": sign(body, self.channel_secret) if signature is None else signature,
        }

    async def deliver(
        self,
        url: str,
        *events: Event,
        signature: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[int, str]:
        """POST the events to a webhook as LINE does; ``signature`` forges one. Returns
        (status, body text)."""
        body = self.body(*events)
        headers = self.headers(body, signature=signature)
        own = session is None
        client = session or aiohttp.ClientSession()
        try:
            async with client.post(url, data=body, headers=headers) as response:
                return response.status, await response.text()
        finally:
            if own:
                await client.close()


def _source(user: str | None, chat: str | None) -> dict[str, str]:
    if chat is None:
        return {"type": "user", "userId": user or ""}
    kind, key = ("group", "groupId") if chat.startswith("C") else ("room", "roomId")
    return {"type": kind, key: chat, **({"userId": user} if user else {})}

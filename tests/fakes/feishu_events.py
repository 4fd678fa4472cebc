"""What Feishu's servers send to an app's request URL, built and sealed the way they do it, so
tests can post it to difybot's ``POST /feishu/events``. Written from the event docs
("接收事件", "将事件发送至开发者服务器"), independently of lark-oapi and of difybot.

- v2 envelope: ``{"schema": "2.0", "header": {"event_id", "token", "create_time",
  "event_type", "tenant_key", "app_id"}, "event": {...}}``; ``header.token`` is the app's
  Verification Token. ``url_verification`` is ``{"challenge", "token", "type"}`` and must be
  echoed within 1 s.
- With an Encrypt Key, the body is ``{"encrypt": base64(iv + AES-256-CBC(json))}``, key =
  SHA-256(encrypt key), PKCS#7 padding, a random 16-byte IV; and ``X-Lark-Signature`` =
  hex SHA-256(``X-Lark-Request-Timestamp`` + ``X-Lark-Request-Nonce`` + encrypt key + raw
  body). Without one, bodies are plain JSON and no signature is sent.
- Feishu waits 3 s for an HTTP 200; otherwise it retries after 15 s, 5 min, 1 h and 6 h (four
  retries, ~7.1 h), with the same ``event_id``: :meth:`FeishuCallbacks.redeliver` resends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.fakes.feishu import APP_ID, BOT_OPEN_ID, TENANT_KEY
from tests.fakes.feishu_store import FeishuMessage

VERIFICATION_TOKEN = "vQGpCRlEAsTcLZkS5f0uOgbXkS3hTIq7"
ENCRYPT_KEY = "kudryavkaDifybotEncryptKey"
ANSWER_WITHIN = 3.0  # seconds Feishu waits before it counts a push as failed


@dataclass(frozen=True)
class Person:
    open_id: str
    name: str = "Lin"
    union_id: str = ""
    user_id: str | None = None  # "" for a bot: it has no user_id

    def ids(self) -> dict[str, str]:
        tail = self.open_id.removeprefix("ou_")
        user_id = tail[:8] if self.user_id is None else self.user_id
        return {"union_id": self.union_id or f"on_{tail}", "user_id": user_id,
                "open_id": self.open_id}  # fmt: skip


@dataclass
class Sealed:
    """One HTTP request exactly as Feishu would send it."""

    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]


@dataclass
class Delivery:
    status: int | None  # None: no answer within ANSWER_WITHIN (Feishu will retry)
    text: str = ""
    json: Any = None
    sealed: Sealed | None = field(default=None, repr=False)


class FeishuCallbacks:
    def __init__(
        self,
        *,
        app_id: str = APP_ID,
        tenant_key: str = TENANT_KEY,
        verification_token: str = VERIFICATION_TOKEN,
        encrypt_key: str | None = ENCRYPT_KEY,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.app_id, self.tenant_key = app_id, tenant_key
        self.verification_token, self.encrypt_key = verification_token, encrypt_key
        self._wall = wall

    # ---- payloads -----------------------------------------------------------------------------

    def envelope(
        self, event_type: str, event: dict[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        header = {"event_id": event_id or secrets.token_hex(16), "token": self.verification_token,
                  "create_time": str(int(self._wall() * 1000)), "event_type": event_type,
                  "tenant_key": self.tenant_key, "app_id": self.app_id}  # fmt: skip
        return {"schema": "2.0", "header": header, "event": event}

    def message_received(
        self, message: FeishuMessage, *, sender: Person | None = None, event_id: str | None = None
    ) -> dict[str, Any]:
        """``im.message.receive_v1`` for a message a person posted (FakeFeishu.user_message)."""
        person = sender or Person(message.sender_id)
        body: dict[str, Any] = {"message_id": message.message_id, "root_id": message.root_id,
                "parent_id": message.parent_id, "create_time": str(message.create_time),
                "update_time": str(message.update_time), "chat_id": message.chat_id,
                "thread_id": message.thread_id, "chat_type": message.chat_type,
                "message_type": message.msg_type,
                "content": json.dumps(message.content, ensure_ascii=False)}  # fmt: skip
        if message.mentions:
            body["mentions"] = message.mentions
        body = {key: value for key, value in body.items() if value != ""}
        sender_info = {"sender_id": person.ids(), "sender_type": "user",
                       "tenant_key": self.tenant_key}  # fmt: skip
        event = {"sender": sender_info, "message": body}
        return self.envelope("im.message.receive_v1", event, event_id=event_id)

    def card_action(
        self,
        *,
        value: dict[str, Any],
        message_id: str,
        chat_id: str,
        operator: Person,
        tag: str = "button",
        form_value: dict[str, Any] | None = None,
        name: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """``card.action.trigger``: a person pressed a button (or submitted a form) on a card."""
        action: dict[str, Any] = {"value": value, "tag": tag}
        if form_value is not None:
            action["form_value"] = form_value
        if name is not None:
            action["name"] = name
        event = {"operator": {"tenant_key": self.tenant_key, **operator.ids()},
                 "token": f"c-{secrets.token_hex(20)}", "action": action, "host": "im_message",
                 "context": {"open_message_id": message_id, "open_chat_id": chat_id}}  # fmt: skip
        return self.envelope("card.action.trigger", event, event_id=event_id)

    def url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return {"challenge": challenge or secrets.token_urlsafe(24),
                "token": self.verification_token, "type": "url_verification"}  # fmt: skip

    # ---- sealing ------------------------------------------------------------------------------

    def seal(
        self,
        payload: dict[str, Any],
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
    ) -> Sealed:
        """Encrypt (when there is an Encrypt Key) and sign; ``signature`` forges the header."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        if self.encrypt_key:
            body = json.dumps({"encrypt": self.encrypt(body)}).encode()
        timestamp = timestamp or str(int(self._wall()))
        nonce = nonce or secrets.token_hex(8)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce,
                   "X-Request-Id": secrets.token_hex(16)}  # fmt: skip
        if self.encrypt_key:
            forged = signature
            headers["X-Lark-Signature"] = forged or sign(timestamp, nonce, self.encrypt_key, body)
        return Sealed(payload, body, headers)

    def encrypt(self, plaintext: bytes) -> str:
        assert self.encrypt_key, "no Encrypt Key configured"
        return encrypt(self.encrypt_key, plaintext)

    def decrypt(self, token: str) -> bytes:
        assert self.encrypt_key, "no Encrypt Key configured"
        return decrypt(self.encrypt_key, token)

    # ---- delivery -----------------------------------------------------------------------------

    async def post(
        self,
        url: str,
        payload: dict[str, Any] | Sealed,
        *,
        answer_within: float = ANSWER_WITHIN,
        **seal: Any,
    ) -> Delivery:
        """One push: Feishu gives the app ``answer_within`` seconds to answer 200."""
        sealed = payload if isinstance(payload, Sealed) else self.seal(payload, **seal)
        timeout = aiohttp.ClientTimeout(total=answer_within)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, data=sealed.body, headers=sealed.headers) as response,
            ):
                text = await response.text()
        except TimeoutError:
            return Delivery(None, sealed=sealed)
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Delivery(response.status, text, parsed, sealed)

    async def redeliver(self, url: str, sealed: Sealed) -> Delivery:
        """Feishu's retry of a push: the same event (same ``event_id``), sealed afresh."""
        return await self.post(url, sealed.payload)


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def encrypt(encrypt_key: str, plaintext: bytes) -> str:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    pad = 16 - len(plaintext) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(iv + sealed).decode()


def decrypt(encrypt_key: str, token: str) -> bytes:
    key = hashlib.sha256(encrypt_key.encode()).digest()
    raw = base64.b64decode(token)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    return padded[: -padded[-1]]


def mention(
    person: Person | None = None, *, key: str = "@_user_1", name: str = "Dify"
) -> dict[str, Any]:
    """A ``mentions`` entry; the default is the bot itself."""
    who = person or Person(BOT_OPEN_ID, name, union_id="on_bot", user_id="")
    return {"key": key, "id": who.ids(), "name": who.name if person else name,
            "tenant_key": TENANT_KEY}  # fmt: skip

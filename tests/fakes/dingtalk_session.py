"""Session webhooks on the fake DingTalk's oapi origin: ``POST /robot/sendBySession?session=...``,
the URL each robot callback carries in ``sessionWebhook`` until ``sessionWebhookExpiredTime``.

Old-API style: always HTTP 200, errors as ``{"errcode", "errmsg"}``. Facts: the URL lives about
90 minutes (the docs' sample callback: expiry = createAt + 5 400 s); an expired or unknown session
gets errcode 300001 "session 不存在"; a body over 20 000 bytes gets 460101 "message too long,
exceed 20000 bytes" (counted on the raw body, so ``\\uXXXX``-escaped Chinese costs six bytes a
character); more than 20 messages a minute get 410100 (DingTalk's documented robot limit, applied
here per session).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.dingtalk_wire import DingTalkCall, Windows, json_response, oapi_error

if TYPE_CHECKING:
    from tests.fakes.dingtalk import FakeDingTalk

SESSION_LIFETIME = 5400.0
MAX_BODY = 20000
PER_MINUTE = 20


@dataclass
class Session:
    token: str
    space: str
    conversation_id: str
    expires_at: float  # Unix seconds


class SessionWebhooks:
    def __init__(self, fake: FakeDingTalk) -> None:
        self.fake = fake
        self.sessions: dict[str, Session] = {}
        self.posted: list[dict[str, Any]] = []
        self.per_minute: int | None = PER_MINUTE
        self.max_body = MAX_BODY
        self._windows = Windows(fake.clock)

    def open(
        self, space: str, conversation_id: str, *, lifetime: float = SESSION_LIFETIME
    ) -> Session:
        session = Session(uuid.uuid4().hex, space, conversation_id, self.fake.clock() + lifetime)
        self.sessions[session.token] = session
        return session

    def url(self, session: Session) -> str:
        return f"{self.fake.oapi_url}/robot/sendBySession?session={session.token}"

    def expire(self, session: Session) -> None:
        session.expires_at = 0.0

    async def send(self, call: DingTalkCall, request: web.Request) -> web.Response:
        if len(call.body) > self.max_body:
            return oapi_error(460101, f"message too long, exceed {self.max_body} bytes")
        session = self.sessions.get(call.query.get("session", ""))
        if session is None or session.expires_at <= self.fake.clock():
            return oapi_error(300001, "session 不存在")
        if not self._windows.allow(session.token, self.per_minute, 60.0):
            return oapi_error(410100, "send too fast, exceed 20 times per minute")
        body = call.json if isinstance(call.json, dict) else {}
        message = _readable(body)
        if isinstance(message, str):
            return oapi_error(40035, message)
        at = body.get("at") or {}
        self.posted.append({"space": session.space, "via": "session", "at": self.fake.next_id(),
                            "msgtype": body["msgtype"], **message,
                            "atUserIds": list(at.get("atUserIds") or []),
                            "isAtAll": bool(at.get("isAtAll"))})  # fmt: skip
        return json_response({"errcode": 0, "errmsg": "ok"})


def _readable(body: dict[str, Any]) -> dict[str, str] | str:
    """The text a person reads, or the error message for a malformed body."""
    kind = body.get("msgtype")
    part = body.get(kind) if isinstance(kind, str) else None
    if not isinstance(part, dict):
        return f"缺少参数 {kind or 'msgtype'}"
    if kind == "text":
        return (
            {"text": part["content"]}
            if isinstance(part.get("content"), str)
            else "缺少参数 text.content"
        )
    if kind in ("markdown", "actionCard"):
        if not all(isinstance(part.get(name), str) for name in ("title", "text")):
            return f"缺少参数 {kind}.title/{kind}.text"
        return {"title": part["title"], "text": part["text"]}
    if kind == "link":
        return {"title": str(part.get("title", "")), "text": str(part.get("text", ""))}
    return f"不支持的 msgtype {kind}"

"""The fake DingTalk's Stream mode gateway: ``POST /v1.0/gateway/connections/open`` hands out an
endpoint and a one-time ticket (valid 90 s), the websocket at that endpoint pushes SYSTEM /
EVENT / CALLBACK frames and records the client's acks (protocol: developerpedia
docs/learn/stream/protocol.md and dingtalk-stream's stream.py / frames.py).

Frames carry ``data`` as a JSON *string*. Each push goes to one connection subscribed to its
topic (DingTalk picks one at random among several; the fake takes the newest, or the one a test
names). Robot messages are fire-and-forget (no redelivery on a missing ack); events are redelivered
by ``redeliver`` with the same ``messageId``, as DingTalk does when an ack does not arrive.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakes.dingtalk_wire import json_response, openapi_error

if TYPE_CHECKING:
    from tests.fakes.dingtalk import FakeDingTalk

BOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
TICKET_LIFETIME = 90.0  # seconds; one connection per ticket


@dataclass
class StreamConnection:
    connection_id: str
    subscriptions: list[dict[str, str]]
    ws: web.WebSocketResponse
    ua: str = ""

    def subscribed(self, kind: str, topic: str) -> bool:
        return any(s.get("type") == kind and s.get("topic") in (topic, "*")
                   for s in self.subscriptions)  # fmt: skip


@dataclass
class Ticket:
    subscriptions: list[dict[str, str]]
    ua: str
    expires_at: float


@dataclass
class StreamGateway:
    fake: FakeDingTalk
    connections: list[StreamConnection] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)  # by messageId
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # frames pushed, by messageId
    opened: int = 0  # connections/open calls that got a ticket
    refused_tickets: int = 0
    accepting: bool = True  # False: connections/open answers 503 (a gateway outage)
    _tickets: dict[str, Ticket] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return self.fake.api_url.replace("http://", "ws://") + "/connect"

    # ---- HTTP: register a connection ------------------------------------------------------

    def open(self, body: dict[str, Any]) -> web.Response:
        if not self.accepting:
            return openapi_error(503, "ServiceUnavailable", "服务暂时不可用")
        if (body.get("clientId"), body.get("clientSecret")) != (
            self.fake.client_id,
            self.fake.client_secret,
        ):
            return openapi_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        subscriptions = body.get("subscriptions")
        if not isinstance(subscriptions, list) or not subscriptions:
            return openapi_error(400, "param.subscriptions.invalid", "subscriptions 不能为空")
        ticket = str(uuid.uuid4())
        expires = self.fake.clock() + TICKET_LIFETIME
        self._tickets[ticket] = Ticket(subscriptions, str(body.get("ua", "")), expires)
        self.opened += 1
        return json_response({"endpoint": self.endpoint, "ticket": ticket})

    # ---- websocket ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = self._tickets.pop(request.query.get("ticket", ""), None)
        if ticket is None or ticket.expires_at < self.fake.clock():
            self.refused_tickets += 1
            self.fake.notify()
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = StreamConnection(uuid.uuid4().hex, ticket.subscriptions, ws, ticket.ua)
        self.connections.append(connection)
        self.fake.notify()
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    self._ack(frame.data)
        finally:
            self.connections.remove(connection)
            self.fake.notify()
        return ws

    def _ack(self, raw: str) -> None:
        try:
            ack = json.loads(raw)
            message_id = str(ack["headers"]["messageId"])
        except (ValueError, KeyError, TypeError):
            return  # DingTalk ignores what it cannot read
        self.acks[message_id] = ack
        pushed = self.sent.get(message_id, {})
        if pushed.get("headers", {}).get("topic") == CARD_TOPIC and ack.get("code") == 200:
            data = json.loads(pushed["data"])
            answer = _ack_response(ack)
            self.fake.cards.apply_callback_answer(data["outTrackId"], data["userId"], answer)
        self.fake.notify()

    # ---- pushing --------------------------------------------------------------------------

    async def push(
        self,
        kind: str,
        topic: str,
        data: dict[str, Any],
        *,
        message_id: str | None = None,
        extra_headers: dict[str, str] | None = None,
        connection: StreamConnection | None = None,
    ) -> str:
        """One frame to a subscribed connection (waits for one to be there); its messageId."""
        message_id = message_id or f"{uuid.uuid4().hex[:8]}_{int(time.time() * 1000)}"
        headers = {"contentType": "application/json", "messageId": message_id, "topic": topic,
                   "time": str(int(self.fake.clock() * 1000)), **(extra_headers or {})}  # fmt: skip
        if kind == "CALLBACK":
            headers["appId"] = self.fake.app_id
        frame = {"specVersion": "1.0", "type": kind, "headers": headers,
                 "data": json.dumps(data, ensure_ascii=False)}  # fmt: skip
        target = connection or await self._subscriber(kind, topic)
        if kind != "SYSTEM":
            self.sent[message_id] = frame
        await target.ws.send_str(json.dumps(frame, ensure_ascii=False))
        return message_id

    async def _subscriber(self, kind: str, topic: str) -> StreamConnection:
        def pick() -> StreamConnection | None:
            live = [c for c in self.connections if not c.ws.closed]
            if kind == "SYSTEM":
                return live[-1] if live else None
            return next((c for c in reversed(live) if c.subscribed(kind, topic)), None)

        await self.fake.until(lambda: pick() is not None, what=f"a stream connection for {topic}")
        found = pick()
        assert found is not None
        return found

    async def bot_message(self, payload: dict[str, Any], **kwargs: Any) -> str:
        return await self.push("CALLBACK", BOT_TOPIC, payload, **kwargs)

    async def card_callback(self, payload: dict[str, Any], **kwargs: Any) -> str:
        return await self.push("CALLBACK", CARD_TOPIC, payload, **kwargs)

    async def event(self, event_type: str, data: dict[str, Any], **kwargs: Any) -> str:
        headers = {"eventType": event_type, "eventId": uuid.uuid4().hex,
                   "eventCorpId": self.fake.corp_id,
                   "eventBornTime": str(int(self.fake.clock() * 1000)),
                   "eventUnifiedAppId": self.fake.app_id}  # fmt: skip
        return await self.push("EVENT", "*", data, extra_headers=headers, **kwargs)

    async def redeliver(self, message_id: str) -> None:
        """The same frame again (same messageId), as DingTalk does for an unacked event."""
        frame = self.sent[message_id]
        target = await self._subscriber(frame["type"], frame["headers"]["topic"])
        await target.ws.send_str(json.dumps(frame, ensure_ascii=False))

    async def ping(self) -> str:
        opaque = uuid.uuid4().hex
        message_id = await self.push("SYSTEM", "ping", {"opaque": opaque})
        self.sent[message_id] = {"type": "SYSTEM", "opaque": opaque}
        return message_id

    async def disconnect(self, reason: str = "connection is expired") -> StreamConnection:
        """DingTalk's graceful close: a SYSTEM ``disconnect`` frame (no ack needed); the server
        drops the TCP connection 10 s later (the fake: when the test calls ``close``)."""
        target = await self._subscriber("SYSTEM", "disconnect")
        await self.push("SYSTEM", "disconnect", {"reason": reason}, connection=target)
        return target

    async def acked(self, message_id: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.fake.until(lambda: message_id in self.acks, timeout, f"ack of {message_id}")
        return self.acks[message_id]

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.ws.close()

    async def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.fake.until(lambda: len(self.connections) >= count, timeout,
                              f"{count} stream connection(s)")  # fmt: skip

    async def wait_disconnected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.fake.until(lambda: not self.connections, timeout, "stream connections closed")


def _ack_response(ack: dict[str, Any]) -> Any:
    """The SDK's CallbackHandler acks with ``data = json.dumps({"response": ...})``."""
    try:
        data = json.loads(ack.get("data") or "{}")
    except ValueError:
        return None
    return data.get("response") if isinstance(data, dict) else None

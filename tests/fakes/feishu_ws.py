"""The fake Feishu's long connection ("使用长连接接收事件"), built from lark-oapi's client
(``lark_oapi/ws/client.py``, ``ws/const.py``, ``ws/model.py``):

1. ``POST /callback/ws/endpoint`` with ``{"AppID", "AppSecret"}`` answers HTTP 200 with
   ``{"code": 0, "data": {"URL": "wss://…?device_id=…&service_id=…", "ClientConfig": {...}}}``;
   a refusal is a non-zero ``code`` (the SDK gives up on any code but 1 and 1000040343).
2. The client opens that URL as a websocket (no headers: the URL itself carries the one-time
   credential, here ``ticket``); a refused upgrade carries ``handshake-status``,
   ``handshake-msg`` and ``handshake-autherrcode`` (514 + 1000040350 = too many connections).
3. Every message is one binary protobuf frame (feishu_frames.py). Events arrive as DATA frames
   with headers ``type=event``, ``message_id``, ``sum``, ``seq``, ``trace_id`` — a large payload
   split into ``sum`` frames — carrying the same plaintext v2 JSON a webhook gets (no
   encryption, no signature: the connection was authenticated when it opened). The client
   answers each with the same frame, a ``biz_rt`` header added and payload
   ``{"code": 200}`` (``"data"``: base64 JSON for a card callback's answer).
4. The client pings (CONTROL frame ``type=ping``) every ``PingInterval`` s; the server answers
   ``pong`` whose payload may carry a new ``ClientConfig``.

Feishu pushes each event to one of the app's connections (at most 50), not to all of them;
the fake picks them in turn.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakes.feishu_frames import CONTROL, DATA, Frame, decode, encode
from tests.fakes.feishu_store import FeishuError

if TYPE_CHECKING:
    from tests.fakes.feishu import FakeFeishu, FeishuCall

EXCEED_CONN_LIMIT = 1000040350


@dataclass
class Ack:
    message_id: str
    code: int
    headers: dict[str, str]
    data: Any = None  # the decoded answer of a callback (card action), if any


@dataclass
class Connection:
    ws: web.WebSocketResponse
    device_id: str
    pings: int = 0
    frames: list[Frame] = field(default_factory=list)  # every frame the client sent


class FakeLongConnection:
    def __init__(self, feishu: FakeFeishu) -> None:
        self._feishu = feishu
        self.client_config: dict[str, int] = {
            "ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30,
            "PingInterval": 120,
        }  # fmt: skip
        self.service_id = 33554678
        self.max_connections = 50
        self.connections: list[Connection] = []  # open now
        self.opened = 0  # connections ever accepted
        self.refused: list[dict[str, str]] = []  # handshake refusals sent
        self.acks: dict[str, Ack] = {}
        self.sent: dict[str, bytes] = {}  # message_id -> event payload pushed
        self.pong_config: dict[str, int] | None = None  # sent in the next pongs, if set
        self._tickets: dict[str, str] = {}  # one-time ticket -> device_id
        self._refuse_next: list[tuple[int, str, int]] = []
        self._turn = itertools.count()
        self._ids = itertools.count(1)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v2", self._websocket)

    @property
    def live(self) -> int:
        return len(self.connections)

    # ---- scripting ----------------------------------------------------------------------------

    def refuse_next_handshake(
        self, status: int = 514, msg: str = "auth failed", autherrcode: int = EXCEED_CONN_LIMIT
    ) -> None:
        self._refuse_next.append((status, msg, autherrcode))

    async def send_event(
        self, payload: dict[str, Any] | bytes, *, parts: int = 1, message_type: str = "event"
    ) -> str:
        """Push one event (v2 JSON) to one open connection; the frame's ``message_id``."""
        await self._feishu.until(lambda: bool(self.connections), what="a long connection")
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        connection = self.connections[next(self._turn) % len(self.connections)]
        message_id = f"{secrets.token_hex(8)}_{next(self._ids)}"
        trace_id = secrets.token_hex(8)
        size = -(-len(raw) // parts)
        for seq in range(parts):
            headers = [("type", message_type), ("message_id", message_id), ("sum", str(parts)),
                       ("seq", str(seq)), ("trace_id", trace_id)]  # fmt: skip
            chunk = raw[seq * size : (seq + 1) * size]
            frame = Frame(DATA, self.service_id, headers, chunk, seq_id=seq, log_id=next(self._ids))
            await connection.ws.send_bytes(encode(frame))
        self.sent[message_id] = raw
        return message_id

    async def acked(self, message_id: str, timeout: float = 5.0) -> Ack:  # noqa: ASYNC109
        await self._feishu.until(lambda: message_id in self.acks, timeout, f"ack of {message_id}")
        return self.acks[message_id]

    async def drop(self) -> None:
        """Close every connection from the server side (a deploy at Feishu's end)."""
        for connection in list(self.connections):
            await connection.ws.close()

    async def close(self) -> None:
        await self.drop()

    # ---- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        body = call.body if isinstance(call.body, dict) else {}
        feishu = self._feishu
        if body.get("AppID") != feishu.app_id or body.get("AppSecret") != feishu.app_secret:
            raise FeishuError(10014, "app secret invalid", status=200)
        device_id, ticket = str(7_000_000_000_000_000_000 + next(self._ids)), secrets.token_hex(16)
        self._tickets[ticket] = device_id
        ws_origin = feishu.origin.replace("http://", "ws://")
        url = (f"{ws_origin}/ws/v2?fpid=493&aid=552564&device_id={device_id}"
               f"&access_key={secrets.token_hex(16)}&service_id={self.service_id}"
               f"&ticket={ticket}")  # fmt: skip
        return {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self.client_config}}

    # ---- the websocket ------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        device_id = self._tickets.pop(request.query.get("ticket", ""), None)
        refusal = self._refusal(device_id)
        if refusal is not None:
            self.refused.append(refusal)
            self._feishu.notify()
            return web.Response(status=403 if refusal["handshake-status"] == "403" else 400,
                                headers=refusal)  # fmt: skip
        assert device_id is not None
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = Connection(ws, device_id)
        self.connections.append(connection)
        self.opened += 1
        self._feishu.notify()
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    await self._on_frame(connection, decode(message.data))
        finally:
            self.connections.remove(connection)
            self._feishu.notify()
        return ws

    def _refusal(self, device_id: str | None) -> dict[str, str] | None:
        if device_id is None:
            return {"handshake-status": "403", "handshake-msg": "invalid or used ticket",
                    "handshake-autherrcode": "0"}  # fmt: skip
        if self._refuse_next:
            status, msg, code = self._refuse_next.pop(0)
        elif len(self.connections) >= self.max_connections:
            status, msg, code = 514, "exceed connection limit", EXCEED_CONN_LIMIT
        else:
            return None
        return {"handshake-status": str(status), "handshake-msg": msg,
                "handshake-autherrcode": str(code)}  # fmt: skip

    async def _on_frame(self, connection: Connection, frame: Frame) -> None:
        connection.frames.append(frame)
        if frame.method == CONTROL and frame.header("type") == "ping":
            connection.pings += 1
            config = self.pong_config
            pong = Frame(CONTROL, frame.service, [("type", "pong")],
                         json.dumps(config).encode() if config else b"")  # fmt: skip
            await connection.ws.send_bytes(encode(pong))
        elif frame.method == DATA:
            message_id = frame.header("message_id") or ""
            answer = json.loads(frame.payload or b"{}")
            data = answer.get("data")
            decoded = json.loads(base64.b64decode(data)) if data else None
            self.acks[message_id] = Ack(message_id, int(answer.get("code", 0)),
                                        dict(frame.headers), decoded)  # fmt: skip
        self._feishu.notify()

"""The fake Slack's Socket Mode websocket: ``hello``, envelopes in, acks recorded."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakes.slack_api import FakeSlack


class FakeSocketMode:
    def __init__(self, slack: FakeSlack) -> None:
        self._slack = slack
        self.sockets: list[web.WebSocketResponse] = []
        # Slack spreads a workspace's events over its open connections (up to 10, one per
        # replica): with ``spread`` each envelope goes to the next one, else to the newest.
        self.spread = False
        self._turn = 0
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections = 0

    @property
    def url(self) -> str:
        return self._slack.origin.replace("http://", "ws://") + "/link"

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        self.connections += 1
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"},
                 "debug_info": {"host": "fake", "approximate_connection_time": 3600}}  # fmt: skip
        await ws.send_json(hello)
        self._slack.notify()
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    ack = frame.json()
                    self.acks[str(ack.get("envelope_id"))] = ack
                    self._slack.notify()
        finally:
            self.sockets.remove(ws)
            self._slack.notify()
        return ws

    async def send(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """One envelope (``events_api``, ``slash_commands`` or ``interactive``); its id."""
        await self._slack.until(lambda: bool(self.sockets), what="socket mode connection")
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        self._turn += 1
        socket = self.sockets[self._turn % len(self.sockets)] if self.spread else self.sockets[-1]
        await socket.send_json(envelope)
        return envelope_id

    async def acked(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self._slack.until(lambda: envelope_id in self.acks, timeout, f"ack of {envelope_id}")
        return self.acks[envelope_id]

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

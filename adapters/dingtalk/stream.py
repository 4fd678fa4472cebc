"""DingTalk Stream mode: one outbound websocket, no public URL (developerpedia "Stream 模式协议",
dingtalk-stream's ``stream.py``).

``POST /v1.0/gateway/connections/open`` (client id and secret, the topics) hands out an endpoint
and a one-time ticket; the websocket at ``endpoint?ticket=...`` pushes frames whose ``data`` is a
JSON string. Each frame is acknowledged with its ``messageId``: a SYSTEM ``ping`` with its own
data back, a robot message (CALLBACK ``/v1.0/im/bot/messages/get``) once the journal holds it.
A SYSTEM ``disconnect`` announces that the server closes the connection in 10 s: a new one is
opened at once. A lost connection is reopened after a backoff with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from adapters.dingtalk.api import DingTalkAPI, DingTalkAPIError, to_result
from bot.errors import CallbackRejected, ShuttingDown
from bot.ops.effort import cancelled

log = logging.getLogger(__name__)

BOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
Take = Callable[[Any], Awaitable[None]]
TakeAction = Callable[[Any, str], Awaitable[None]]  # a card callback and its messageId


class StreamClient:
    """Keeps one Stream mode connection open and hands robot messages to ``take``."""

    def __init__(
        self,
        api: DingTalkAPI,
        *,
        client_secret: str,
        backoff: tuple[float, float] = (1.0, 30.0),
        heartbeat: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._secret = client_secret
        self._backoff = backoff
        self._heartbeat = heartbeat
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections = 0  # websockets opened so far
        self._take_action: TakeAction | None = None

    async def start(self, take: Take, take_action: TakeAction | None = None) -> None:
        """Robot messages to ``take``; card button clicks to ``take_action`` when given."""
        self._take_action = take_action
        self._task = asyncio.create_task(self._run(take), name="dingtalk-stream")

    async def stop(self) -> None:
        await cancelled(self._task, *self._handlers)

    async def _run(self, take: Take) -> None:
        failures = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            while True:
                try:
                    endpoint = await self._open()
                    failures = 0 if await self._listen(session, endpoint, take) else failures + 1
                except DingTalkAPIError as exc:
                    failures += 1
                    log.warning("DingTalk Stream connection not opened: %s", exc)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures += 1  # not the exception's text: it carries the URL and its ticket
                    log.warning("DingTalk Stream connection lost: %s", _reason(exc))
                if failures:
                    low, high = self._backoff
                    await self._sleep(min(high, low * 2 ** (failures - 1)) * random.uniform(1, 1.5))

    async def _open(self) -> str:
        """The websocket URL with its ticket (the secret goes to DINGTALK_API_BASE only)."""
        body = {
            "clientId": self._api.client_id,
            "clientSecret": self._secret,
            "subscriptions": [
                {"type": "CALLBACK", "topic": topic}
                for topic in (BOT_TOPIC, CARD_TOPIC if self._take_action else None)
                if topic
            ],
            "ua": "difybot",
            "localIp": _local_ip(),
        }
        url = f"{self._api.api_base}/v1.0/gateway/connections/open"
        answer = await self._api.pacer.call("connections/open", lambda: self._post(url, body))
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str):
            raise DingTalkAPIError("connections/open without endpoint or ticket", code="bad_answer")
        return str(URL(endpoint).update_query(ticket=ticket))

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        response = await self._api.http.post(url, content=orjson.dumps(body), headers=headers)
        return to_result(response)

    async def _listen(self, session: aiohttp.ClientSession, url: str, take: Take) -> bool:
        """Serve one connection until it ends; True when it was a graceful end (disconnect)."""
        timeout = aiohttp.ClientWSTimeout(ws_receive=self._heartbeat * 3, ws_close=5.0)
        async with session.ws_connect(url, heartbeat=self._heartbeat, timeout=timeout) as ws:
            self.connections += 1
            log.info("DingTalk Stream connected")
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                if await self._frame(ws, frame.data, take):
                    return True
        return False

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, raw: str, take: Take) -> bool:
        """Handle one frame; True when the server announced a disconnect."""
        try:
            frame = orjson.loads(raw)
            headers = frame["headers"]
            message_id, topic = str(headers["messageId"]), str(headers.get("topic", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("DingTalk Stream frame not understood; ignored")
            return False
        if frame.get("type") == "SYSTEM":
            if topic == "disconnect":
                return True
            await _ack(ws, message_id, data=str(frame.get("data") or "{}"))
            return False
        handler = (
            self._handler(topic, message_id, take) if frame.get("type") == "CALLBACK" else None
        )
        if handler is None:
            await _ack(ws, message_id, code=404, message="not subscribed")
            return False
        task = asyncio.create_task(self._callback(ws, message_id, frame.get("data"), handler))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return False

    def _handler(self, topic: str, message_id: str, take: Take) -> Take | None:
        if topic == BOT_TOPIC:
            return take
        if topic == CARD_TOPIC and self._take_action is not None:
            return _with_id(self._take_action, message_id)
        return None

    async def _callback(
        self, ws: aiohttp.ClientWebSocketResponse, message_id: str, data: Any, take: Take
    ) -> None:
        try:
            await take(orjson.loads(data) if isinstance(data, str) else None)
        except (orjson.JSONDecodeError, CallbackRejected) as exc:
            log.info("DingTalk Stream message %s refused: %s", message_id, exc)
            await _ack(ws, message_id, code=400, message="bad request")
            return
        except ShuttingDown:
            return  # no ack: the message stays DingTalk's to hand to another connection
        except Exception:  # this message's one catch-all: DingTalk hears 500, the loop goes on
            log.exception("DingTalk Stream message %s not taken", message_id)
            await _ack(ws, message_id, code=500, message="internal error")
            return
        await _ack(ws, message_id, data=orjson.dumps({"response": None}).decode())


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


def _with_id(take_action: TakeAction, message_id: str) -> Take:
    async def take(payload: Any) -> None:
        await take_action(payload, message_id)

    return take


async def _ack(
    ws: aiohttp.ClientWebSocketResponse,
    message_id: str,
    *,
    code: int = 200,
    message: str = "OK",
    data: str = "{}",
) -> None:
    if ws.closed:
        return
    headers = {"contentType": "application/json", "messageId": message_id}
    ack = {"code": code, "headers": headers, "message": message, "data": data}
    await ws.send_str(orjson.dumps(ack).decode())


def _local_ip() -> str:
    """The address the gateway's logs show for this connection (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 80))  # TEST-NET-3: routing only, never reached
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"

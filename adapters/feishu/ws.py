"""The long connection ("使用长连接接收事件"): events over a websocket Feishu hands out, so
difybot needs no public URL (like Slack's Socket Mode).

The steps, from lark-oapi's client (``lark_oapi/ws/client.py``): ``POST /callback/ws/endpoint``
with ``{"AppID", "AppSecret"}`` gives a one-time websocket URL (its ``service_id`` goes into
every frame) and a ``ClientConfig`` (``PingInterval``, ``ReconnectInterval`` in seconds); events
come as DATA frames (headers ``type``, ``message_id``, ``sum``, ``seq``: a large event is split
into ``sum`` frames) carrying the same v2 JSON a webhook gets, without encryption or token (the
connection is the credential); each is answered with the same frame, a ``biz_rt`` header added
and payload ``{"code": 200}`` (``data``: base64 JSON, a card action's answer). The client pings
(CONTROL ``type=ping``) every ``PingInterval``; a ``pong`` may carry a new ``ClientConfig``.
Feishu pushes each event to one of the app's connections (50 at most), so every replica may
hold one. A lost connection is opened again after a short random wait, backing off to
``ReconnectInterval``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import orjson

from adapters.feishu.api import FeishuAPIError, send
from adapters.feishu.frames import CONTROL, DATA, Frame, FrameError, decode, encode
from bot.errors import CallbackRejected, ShuttingDown

log = logging.getLogger(__name__)

Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
CONNECT_TIMEOUT = 10.0


class LongConnection:
    """One websocket to Feishu, kept open by one tracked task."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        app_id: str,
        app_secret: str,
        handle: Handle,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._app_id = app_id
        self._secret = app_secret
        self._handle = handle
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self._parts: dict[str, list[bytes | None]] = {}
        self.ping_interval = 120.0
        self.reconnect_interval = 120.0
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT)
        )
        self._task = asyncio.create_task(self._run(), name="feishu-long-connection")

    async def stop(self) -> None:
        for task in [self._task, *self._handling]:
            if task is not None:
                task.cancel()
        pending = [t for t in [self._task, *self._handling] if t is not None]
        if pending:
            await asyncio.wait(pending)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                url = await self._endpoint()
                await self._serve(url)
                failures = 0
            except (FeishuAPIError, aiohttp.ClientError, FrameError, OSError, TimeoutError) as exc:
                failures += 1
                log.warning("Feishu long connection failed (%s); opening it again", _why(exc))
            except Exception:  # the connection's boundary: whatever broke, keep reconnecting
                failures += 1
                log.exception("Feishu long connection broke; opening it again")
            self.connected.clear()
            wait = min(self.reconnect_interval, 2.0 ** min(failures, 7))
            await self._sleep(random.uniform(0.0, 1.0) if failures == 0 else wait)

    async def _endpoint(self) -> str:
        body = {"AppID": self._app_id, "AppSecret": self._secret}
        answer = await send(self._http, "POST", "/callback/ws/endpoint", json=body)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        assert isinstance(data, dict)
        self._configure(data.get("ClientConfig"))
        url = str(data.get("URL") or "")
        if not url:
            raise FeishuAPIError("/callback/ws/endpoint gave no URL")
        return url

    def _configure(self, config: Any) -> None:
        if isinstance(config, dict):
            self.ping_interval = float(config.get("PingInterval") or self.ping_interval)
            self.reconnect_interval = float(config.get("ReconnectInterval") or
                                            self.reconnect_interval)  # fmt: skip

    async def _serve(self, url: str) -> None:
        assert self._session is not None
        service = int((parse_qs(urlsplit(url).query).get("service_id") or ["0"])[0])
        # Feishu answers every ping with a pong: three intervals of silence mean a dead link.
        silence = self.ping_interval * 3
        timeout = aiohttp.ClientWSTimeout(ws_receive=silence, ws_close=CONNECT_TIMEOUT)
        async with self._session.ws_connect(url, autoping=True, timeout=timeout) as ws:
            self.connected.set()
            log.info("Feishu long connection open")
            pinger = asyncio.create_task(self._ping(ws, service))
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        await self._on_frame(ws, decode(message.data))
            finally:
                pinger.cancel()
                await asyncio.gather(pinger, return_exceptions=True)
        log.info("Feishu long connection closed by the server")

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse, service: int) -> None:
        while True:
            await ws.send_bytes(encode(Frame(CONTROL, service, [("type", "ping")])))
            await asyncio.sleep(self.ping_interval)

    async def _on_frame(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
        if frame.method == CONTROL:
            if frame.header("type") == "pong" and frame.payload:
                self._configure(_loads(frame.payload))
            return
        if frame.method != DATA:
            return
        payload = self._joined(frame)
        if payload is not None:
            task = asyncio.create_task(self._answer(ws, frame, payload))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    def _joined(self, frame: Frame) -> bytes | None:
        """The whole event once its ``sum`` parts have arrived."""
        total = int(frame.header("sum", "1") or 1)
        if total <= 1:
            return frame.payload
        message_id, seq = frame.header("message_id"), int(frame.header("seq", "0") or 0)
        parts = self._parts.setdefault(message_id, [None] * total)
        if 0 <= seq < total:
            parts[seq] = frame.payload
        if any(part is None for part in parts):
            return None
        del self._parts[message_id]
        return b"".join(part or b"" for part in parts)

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame, raw: bytes) -> None:
        started = time.monotonic()
        answer: dict[str, Any] = {"code": 200}
        try:
            payload = _loads(raw)
            if not isinstance(payload, dict):
                raise CallbackRejected("event is not a JSON object")
            result = await self._handle(payload)
            if result:
                answer["data"] = base64.b64encode(orjson.dumps(result)).decode()
        except CallbackRejected as exc:
            log.info("Feishu event refused: %s", exc.message)
            answer["code"] = 400
        except ShuttingDown:  # not recorded: Feishu pushes it again, to another connection
            answer["code"] = 503
        except Exception:  # this event's boundary: Feishu pushes it again
            log.exception("Feishu event failed")
            answer["code"] = 500
        elapsed = str(int((time.monotonic() - started) * 1000))
        ack = Frame(DATA, frame.service, [*frame.headers, ("biz_rt", elapsed)],
                    orjson.dumps(answer), frame.seq_id, frame.log_id, frame.log_id_new)  # fmt: skip
        if not ws.closed:
            await ws.send_bytes(encode(ack))


def _why(exc: Exception) -> str:
    """What went wrong, without the one-time URL (its ticket) aiohttp puts in its messages."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        headers: Mapping[str, str] = exc.headers if isinstance(exc.headers, Mapping) else {}
        return (f"handshake refused: HTTP {exc.status} {headers.get('handshake-msg', '')} "
                f"{headers.get('handshake-autherrcode', '')}").strip()  # fmt: skip
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, FeishuAPIError) else type(exc).__name__


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None

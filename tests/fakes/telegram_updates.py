"""The fake Bot API's update queue: getUpdates long polling and webhook delivery.

Both follow the Bot API server (tdlib/telegram-bot-api, Client.cpp and WebhookActor.cpp; read,
not copied):
- getUpdates(offset, limit 1..100, timeout 0..50): updates below ``offset`` are forgotten for
  good; a negative offset keeps only the last ``-offset`` updates. With nothing to return and a
  timeout, the request is held until an update arrives or the timeout passes. A second getUpdates
  while one is held ends the first with 409 "Conflict: terminated by other getUpdates request;
  make sure that only one bot instance is running". The same offset again within 3 s with a
  timeout under 3 is held for 3 s (and gets at most 1 update within 0.5 s): the server's guard
  against busy loops.
- webhook: each update is POSTed as JSON with ``X-Telegram-Bot-Api-Secret-Token`` when a secret
  is set; any 2xx acknowledges it. Otherwise it is retried: at once after the first failure (or
  after the response's Retry-After), then after 2, 4, 8 … seconds, up to 60–120 s, while the
  update is younger than 24 h. Updates of one chat go one at a time, in order; different chats in
  parallel up to ``max_connections`` (default 40). A 2xx answer whose body names a ``method``
  is executed as a call (the "webhook reply"), except get*, setWebhook, deleteWebhook, close and
  logOut.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp

# Without allowed_updates the server leaves out these three (Client.h DEFAULT_ALLOWED_UPDATE_TYPES).
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
LONG_POLL_MAX_TIMEOUT = 50
BUSY_LOOP_WINDOW = 3.0
WEBHOOK_MAX_RESEND = 60


class Conflict(Exception):
    """A held getUpdates ended by another getUpdates or by setWebhook (409)."""


def update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def chat_key(update: dict[str, Any]) -> int | None:
    """The chat an update belongs to (webhook delivery keeps each chat's updates in order)."""
    body = update.get(update_type(update))
    if not isinstance(body, dict):
        return None
    chat = body.get("chat") or (body.get("message") or {}).get("chat")
    return chat.get("id") if isinstance(chat, dict) else None


@dataclass
class _Poll:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    conflict: str | None = None


class UpdateQueue:
    """Updates waiting for the bot, in update_id order."""

    def __init__(
        self,
        *,
        first_id: int = 100_000_001,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pending: list[dict[str, Any]] = []
        self.next_id = first_id
        self.allowed: frozenset[str] | None = None  # None: every type but NOT_BY_DEFAULT
        self.filtered: list[dict[str, Any]] = []  # updates dropped by allowed_updates
        self._clock, self._sleep = clock, sleep
        self._poll: _Poll | None = None
        self._previous: tuple[int, float] | None = None  # (offset, start) of the last getUpdates
        self.on_change: Callable[[], None] = lambda: None  # pushed, or a poll started holding

    def push(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Queue an update (numbered here unless it carries an update_id); None when the bot's
        allowed_updates leaves its type out, as the server never queues those."""
        kind = update_type(update)
        allowed = kind in self.allowed if self.allowed is not None else kind not in NOT_BY_DEFAULT
        if "update_id" not in update:
            update = {"update_id": self.next_id, **update}
        self.next_id = max(self.next_id, update["update_id"] + 1)
        if not allowed:
            self.filtered.append(update)
            return None
        self.pending.append(update)
        if self._poll is not None:
            self._poll.wake.set()
        self.on_change()
        return update

    @property
    def holding(self) -> bool:
        """A getUpdates is held open, waiting for an update or its timeout."""
        return self._poll is not None

    def set_allowed(self, raw: list[str] | None) -> None:
        if raw is not None:
            self.allowed = frozenset(raw) if raw else None

    def forget_below(self, offset: int) -> None:
        if offset < 0:
            self.pending = self.pending[offset:] if -offset < len(self.pending) else self.pending
        elif offset <= self.next_id:  # an offset past the end confirms nothing (server: head)
            self.pending = [u for u in self.pending if u["update_id"] >= offset]

    def terminate_poll(self, message: str) -> None:
        if self._poll is not None:
            self._poll.conflict = message
            self._poll.wake.set()

    async def get_updates(self, offset: int, limit: int, hold: int) -> list[dict[str, Any]]:
        self.terminate_poll(
            "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running"
        )
        now = self._clock()
        if self._previous and self._previous[0] == offset:
            if hold < BUSY_LOOP_WINDOW and now < self._previous[1] + BUSY_LOOP_WINDOW:
                hold = int(BUSY_LOOP_WINDOW)
            if now < self._previous[1] + 0.5:
                limit = 1
        self._previous = (offset, now)
        self.forget_below(offset)
        if self.pending or hold == 0:
            return self.pending[:limit]
        poll = self._poll = _Poll()
        try:
            sleeper = asyncio.ensure_future(self._sleep(hold))
            waker = asyncio.ensure_future(poll.wake.wait())
            await asyncio.sleep(0)  # both have started (an injected clock has the deadline)
            self.on_change()
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
        finally:
            if self._poll is poll:
                self._poll = None
        if poll.conflict is not None:
            raise Conflict(poll.conflict)
        return self.pending[:limit]


@dataclass
class Delivery:
    """One POST of an update to the webhook."""

    update_id: int
    attempt: int
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    error: str = ""
    reply: dict[str, Any] | None = None  # the webhook reply's arguments, when it carried one
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Retry:
    delay: int = 1
    failures: int = 0
    wakeup: float = 0.0


class WebhookPusher:
    """Delivers queued updates to the webhook while one is set."""

    def __init__(
        self,
        queue: UpdateQueue,
        execute: Callable[[str, dict[str, Any]], Awaitable[None]],
        *,
        retry_scale: float = 1.0,
        timeout: float = 30.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.execute = execute  # runs a webhook reply as a Bot API call
        self.retry_scale = retry_scale
        self.timeout = timeout
        self.wall = wall
        self.url = ""
        self.secret = ""
        self.max_connections = 40
        self.deliveries: list[Delivery] = []
        self.last_error_date = 0
        self.last_error_message = ""
        self.on_delivery: Callable[[Delivery], None] = lambda d: None
        self._retries: dict[int, _Retry] = {}
        self._in_flight: set[int] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return bool(self.url)

    def start(self, url: str, secret: str, max_connections: int) -> None:
        self.url, self.secret, self.max_connections = url, secret, max_connections
        if self._session is None:
            self._session = aiohttp.ClientSession()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self.poke()

    async def stop(self) -> None:
        self.url = self.secret = ""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._sending, return_exceptions=True)
            self._task = None
        self._in_flight.clear()

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def poke(self) -> None:
        self._changed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            next_wakeup = self._launch(loop.time())
            delay = None if next_wakeup is None else max(0.0, next_wakeup - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)

    def _launch(self, now: float) -> float | None:
        """Start every delivery that may go now; the earliest later wakeup, if any."""
        busy_chats = {chat_key(u) for u in self.queue.pending if u["update_id"] in self._in_flight}
        seen_chats: set[int | None] = set()
        next_wakeup: float | None = None
        for update in list(self.queue.pending):
            key = chat_key(update)
            ordered = key is not None
            if ordered and (key in seen_chats or key in busy_chats):
                continue
            seen_chats.add(key)
            if update["update_id"] in self._in_flight:
                continue
            retry = self._retries.get(update["update_id"])
            if retry is not None and retry.wakeup > now:
                next_wakeup = min(next_wakeup or retry.wakeup, retry.wakeup)
                continue
            if len(self._in_flight) >= self.max_connections:
                break
            self._in_flight.add(update["update_id"])
            task = asyncio.get_running_loop().create_task(self._deliver(update))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return next_wakeup

    async def _deliver(self, update: dict[str, Any]) -> None:
        update_id = update["update_id"]
        retry = self._retries.setdefault(update_id, _Retry())
        delivery = await self.post(update, attempt=retry.failures + 1)
        self._in_flight.discard(update_id)
        if delivery.status is not None and 200 <= delivery.status <= 299:
            self.queue.pending = [u for u in self.queue.pending if u["update_id"] != update_id]
            self._retries.pop(update_id, None)
            if delivery.reply is not None:
                await self._reply(delivery.reply)
        else:
            self.last_error_date = int(self.wall())
            self.last_error_message = delivery.error
            self._schedule_retry(retry, delivery)
        self.on_delivery(delivery)
        self.poke()

    def _schedule_retry(self, retry: _Retry, delivery: Delivery) -> None:
        retry_after = min(max(int(delivery.headers.get("retry-after", "0") or 0), 0), 3600)
        effective = retry_after
        if retry_after == 0 and retry.failures > 0:
            retry.delay = min(WEBHOOK_MAX_RESEND, retry.delay * 2)
            effective = retry.delay
        retry.failures += 1
        retry.wakeup = asyncio.get_running_loop().time() + effective * self.retry_scale

    async def post(
        self, update: dict[str, Any], *, attempt: int = 1, secret: str | None = None
    ) -> Delivery:
        """POST one update the way the Bot API does; records and returns what happened."""
        assert self._session is not None, "start() first"
        headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip, deflate"}
        token = self.secret if secret is None else secret
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        body = json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()
        delivery = Delivery(update["update_id"], attempt, None)
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=timeout
            ) as response:
                raw = await response.read()
                delivery.status = response.status
                delivery.headers = {k.lower(): v for k, v in response.headers.items()}
                if 200 <= response.status <= 299:
                    delivery.reply = await _webhook_reply(response, raw)
                else:
                    delivery.error = (
                        f"Wrong response from the webhook: {response.status} {response.reason}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = _connection_error(exc)
        self.deliveries.append(delivery)
        return delivery

    async def _reply(self, args: dict[str, Any]) -> None:
        method = str(args.get("method", ""))
        lowered = method.lower()
        if lowered.startswith("get") or lowered in (
            "setwebhook",
            "deletewebhook",
            "close",
            "logout",
        ):
            return
        await self.execute(method, {k: v for k, v in args.items() if k != "method"})


def _connection_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "Read timeout expired"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "Connection refused"
    return "Webhook connection closed"


async def _webhook_reply(response: aiohttp.ClientResponse, raw: bytes) -> dict[str, Any] | None:
    """The call a 2xx answer carries, if any: JSON, a form, or multipart (aiogram's choice)."""
    content_type = response.content_type
    args: dict[str, Any] = {}
    if content_type == "application/json" and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        args = parsed if isinstance(parsed, dict) else {}
    elif content_type == "application/x-www-form-urlencoded":
        args = dict(parse_qsl(raw.decode()))
    elif content_type.startswith("multipart/"):
        args = _multipart_fields(raw, response.headers.get("Content-Type", ""))
    return args if args.get("method") else None


def _multipart_fields(raw: bytes, content_type: str) -> dict[str, Any]:
    boundary = content_type.partition("boundary=")[2].strip('"')
    if not boundary:
        return {}
    fields: dict[str, Any] = {}
    for part in raw.split(b"--" + boundary.encode()):
        head, _, body = part.partition(b"\r\n\r\n")
        name = head.decode(errors="replace").partition('name="')[2].partition('"')[0]
        if name:
            fields[name] = body.removesuffix(b"\r\n").decode(errors="replace")
    return fields

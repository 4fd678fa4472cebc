"""The LINE Messaging API over httpx: reply, push (with retry keys), the loading animation, the
bot's info and message content, every rate-limited call paced by one ``LinePacer``.

LINE answers errors with an HTTP status and ``{"message": ..., "details": [...]}``; every call is
checked and turned into ``LineAPIError``. Its 429 carries no Retry-After (per-second limits, or
the monthly push quota, which no wait cures). The channel access token goes only to the two
configured LINE origins (``LINE_API_BASE``, ``LINE_DATA_API_BASE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import orjson

from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Limit, Priority, Scheduler
from bot.errors import FileUnavailable, PlatformAPIError
from bot.files.downloads import check_size
from bot.ops.metrics import Metrics
from bot.stores import Budgets

log = logging.getLogger(__name__)

T = TypeVar("T")
MONTHLY_LIMIT = "You have reached your monthly limit."
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
Sleep = Callable[[float], Awaitable[None]]
PLATFORM = "line"
LOADING_WITHIN = (
    1.0  # seconds the loading animation may wait for its slot: late, it is worth nothing
)


class LineAPIError(PlatformAPIError):
    """A refused or failed LINE call: ``status`` is LINE's HTTP status (None: no answer came),
    ``message`` LINE's message, ``sent`` what a 409 on a retry key says was already sent."""

    def __init__(self, message: str, *, status: int | None, sent: int = 0) -> None:
        super().__init__(message, status=status, code=str(status or ""))
        self.sent = sent

    @property
    def unsure(self) -> bool:
        """No answer, or a 5xx: LINE may or may not have done it."""
        return self.status is None or self.status >= 500

    @property
    def rate_limited(self) -> bool:
        """A per-second limit (worth a wait), not the monthly push quota (no wait helps)."""
        return self.status == 429 and self.message != MONTHLY_LIMIT


# LINE's per-second limits per endpoint and channel ("other API endpoints: 2,000 requests per
# second"), 90 % of it. Every replica of the channel draws on the same buckets: the scheduler's
# account is the channel (named by a hash of its token: LINE's settings carry no channel id, and
# the token itself must not become a key in the database).
PER_SECOND = 1800
REPLY, PUSH, LOADING = "message/reply", "message/push", "chat/loading/start"


def line_limits() -> Mapping[str, tuple[Limit, ...]]:
    """One bucket per endpoint, per channel. The monthly push quota is not a rate: LINE
    answers 429 "monthly limit" and no wait cures it (never retried, never a pause)."""
    return {method: (Limit.per_window(PER_SECOND, 1.0),) for method in (REPLY, PUSH, LOADING)}


class Skipped(Exception):
    """A call worth nothing late (the loading animation) found no slot in time: not made."""


class LinePacer:
    """Every rate-limited LINE call of one channel goes through here, on the shared delivery
    scheduler: it waits for the endpoint's slot (the answer first, then the loading animation,
    which is skipped when no slot comes within ``LOADING_WITHIN``); after a 429 the endpoint
    waits out the pause on every replica (LINE gives no Retry-After, so it doubles from
    ``base``), and calls LINE may or may not have carried out are retried only when the caller
    says retrying is safe (a push with a retry key, the loading animation)."""

    def __init__(
        self,
        *,
        budgets: Budgets | None = None,
        channel: str = "channel",
        metrics: Metrics | None = None,
        attempts: int = 4,
        base: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._attempts = attempts
        self._base = base
        self._sleep = sleep
        self.scheduler = Scheduler(
            PLATFORM,
            budgets if budgets is not None else MemoryBudgets(clock=clock),
            line_limits(),
            metrics=metrics,
            clock=clock,
            sleep=sleep,
        )
        self._account = self.scheduler.account(channel)

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        method: str = PUSH,
        priority: Priority = Priority.FINAL,
        within: float | None = None,
        retry_unsure: bool = False,
        attempts: int | None = None,
    ) -> T:
        """``within``: seconds the call may wait for its slot (``Skipped`` after)."""
        attempts = attempts or self._attempts
        for attempt in range(attempts):
            if not await self._account.slot(method, priority=priority, within=within):
                raise Skipped(method)
            try:
                return await call()
            except LineAPIError as exc:
                retry = exc.rate_limited or (retry_unsure and exc.unsure)
                if not retry or attempt == attempts - 1:
                    if exc.rate_limited:  # the next call of the endpoint waits too
                        await self._account.block(method, exc.retry_after or self._base)
                    raise
                pause = exc.retry_after or self._base * 2**attempt
                if exc.rate_limited:
                    await self._account.block(method, pause)
                else:
                    await self._sleep(pause)
        raise AssertionError("unreachable")  # the last attempt returns or raises


class LineAPI:
    """One channel's calls. ``http`` has no base URL: each call names its origin."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token: str,
        api_base: str,
        data_base: str,
        pacer: LinePacer,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = http
        self._auth = {"Authorization": f"Bearer {token}"}
        self._api = api_base.rstrip("/")
        self._data = data_base.rstrip("/")
        self.pacer = pacer
        self._sleep = sleep

    async def reply(self, reply_token: str, messages: list[dict[str, Any]]) -> None:
        """Never retried when unsure: a reply token works once, and a retry of one LINE did
        accept would only be refused."""
        body = {"replyToken": reply_token, "messages": messages}
        await self.pacer.run(lambda: self._post("/v2/bot/message/reply", body), method=REPLY)

    async def push(self, to: str, messages: list[dict[str, Any]], *, retry_key: str) -> None:
        """The same ``retry_key`` for every attempt of one push, on any replica: LINE sends it
        once and answers a repeat with 409 (counted as sent)."""
        body = {"to": to, "messages": messages}
        headers = {"X-Line-Retry-Key": retry_key}

        async def once() -> None:
            try:
                await self._post("/v2/bot/message/push", body, headers=headers)
            except LineAPIError as exc:
                if exc.status != 409:
                    raise
                log.info("push already accepted for its retry key: not sent again")

        await self.pacer.run(once, method=PUSH, retry_unsure=True)

    async def show_loading(self, chat_id: str, seconds: int) -> None:
        """One attempt (after any 429 pause), the sign of life: an animation that found no
        slot within ``LOADING_WITHIN`` is not shown (a late one is worth nothing)."""
        body = {"chatId": chat_id, "loadingSeconds": seconds}
        with contextlib.suppress(Skipped):
            await self.pacer.run(
                lambda: self._post("/v2/bot/chat/loading/start", body),
                method=LOADING,
                priority=Priority.SIGN_OF_LIFE,
                within=LOADING_WITHIN,
                attempts=1,
            )

    async def bot_info(self) -> dict[str, Any]:
        response = await self._send("GET", f"{self._api}/v2/bot/info")
        return _object(response)

    @contextlib.asynccontextmanager
    async def content(
        self, message_id: str, *, limit: int, name: str, polls: int = 10
    ) -> AsyncIterator[httpx.Response]:
        """A file a user sent, streaming; a large video or audio answers 202 while LINE
        prepares it, so it is asked again (after 0.5, 1, 2 … s) up to ``polls`` times."""
        url = f"{self._data}/v2/bot/message/{message_id}/content"
        for attempt in range(polls):
            request = self.http.build_request("GET", url, headers=self._auth, timeout=TIMEOUT)
            try:
                response = await self.http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise FileUnavailable(f"{name}: {type(exc).__name__}", name=name) from exc
            try:
                if response.status_code == 200:
                    length = response.headers.get("content-length", "")
                    check_size(int(length) if length.isdigit() else None, limit, name=name)
                    yield response
                    return
                if response.status_code != 202:
                    raise FileUnavailable(f"{name}: HTTP {response.status_code}", name=name)
            finally:
                await response.aclose()
            await self._sleep(min(0.5 * 2**attempt, 8.0))
        raise FileUnavailable(f"{name}: still being prepared by LINE", name=name)

    async def _post(
        self, path: str, body: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self._send(
            "POST",
            f"{self._api}{path}",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return _object(response)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self.http.request(
                method, url, content=content, headers={**self._auth, **(headers or {})},
                timeout=TIMEOUT,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise LineAPIError(f"{type(exc).__name__} calling LINE", status=None) from exc
        if response.status_code >= 300:
            body = _object(response)
            message = str(body.get("message") or f"HTTP {response.status_code}")
            sent = len(body.get("sentMessages") or ())
            raise LineAPIError(message, status=response.status_code, sent=sent)
        return response


def _object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def build_http() -> httpx.AsyncClient:
    """The channel's client: explicit timeouts, no redirects (the token goes nowhere else)."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.AsyncClient(timeout=TIMEOUT, limits=limits, follow_redirects=False)

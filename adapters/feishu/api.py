"""A thin Feishu OpenAPI client over httpx: tenant token, JSON calls, errors, pacing.

lark-oapi is a test dependency only (pyproject.toml says why). Facts used (open.feishu.cn,
server API docs): every answer is ``{"code", "msg", "data"}`` and ``code`` 0 means success;
business errors come as HTTP 400 with a non-zero code; the gateway's rate limit is HTTP 429,
code ``99991400``, with ``x-ogw-ratelimit-reset`` (seconds); ``99991661``/``99991663`` mean the
tenant token is missing or no longer valid. The tenant token lives 2 hours; asking again with
less than 30 minutes left gives a new one, so it is renewed then, and shared by replicas
(``TokenStore``) so they do not each ask.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Limit, Priority, Scheduler
from bot.errors import PlatformAPIError
from bot.ops.metrics import Metrics
from bot.stores import Budgets, TokenStore

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RENEW_BEFORE = 1800.0  # seconds of life left when the token is renewed
RATE_LIMITED = "99991400"
BAD_TOKEN = frozenset({"99991661", "99991663", "99991668"})
PATCH_TOO_FAST = "230020"  # one message PATCHed more than 5 times a second
MAX_TRIES = 3
PLATFORM = "feishu"
Sleep = Callable[[float], Awaitable[None]]


class FeishuAPIError(PlatformAPIError):
    """A refused call; ``code`` is Feishu's (as text), ``status`` the HTTP status."""


# The gateway's limits per app and API (open.feishu.cn "frequency control": 50/s and 1000/min
# by default), 90 % of each; PATCH of one message 5/s (230020 past it), a CardKit card 10
# operations/s across content, settings and update (so they are one route here). Every replica
# of the app draws on the same buckets: the scheduler's account is the app id.
ROUTES = {
    "bot.info": "GET /open-apis/bot/v3/info",
    "im.message.create": "POST /open-apis/im/v1/messages",
    "im.message.reply": "POST /open-apis/im/v1/messages/:id/reply",
    "im.message.patch": "PATCH /open-apis/im/v1/messages/:id",
    "im.message.reaction.create": "POST /open-apis/im/v1/messages/:id/reactions",
    "im.message.reaction.delete": "DELETE /open-apis/im/v1/messages/:id/reactions/:id",
    "cardkit.card.create": "POST /open-apis/cardkit/v1/cards",
    "cardkit.card": "PUT|PATCH /open-apis/cardkit/v1/cards/:id(/elements/:id/content|/settings)",
    "im.image.create": "POST /open-apis/im/v1/images",
    "im.file.create": "POST /open-apis/im/v1/files",
    "api": "any other call",
}
PER_SECOND, PER_MINUTE = 45, 900
PATCH_PER_SECOND, CARD_OPS_PER_SECOND, CARD_BURST = 5, 10, 7


def feishu_limits() -> Mapping[str, tuple[Limit, ...]]:
    """The buckets of each route: the gateway's per second and per minute (per app), and per
    message / per card (``per_channel``, the channel being the message or card id)."""
    gateway = (Limit.per_window(PER_SECOND, 1.0), Limit.per_minute(PER_MINUTE))
    limits: dict[str, tuple[Limit, ...]] = {route: gateway for route in ROUTES}
    limits["im.message.patch"] = (
        *gateway,
        Limit.per_window(PATCH_PER_SECOND, 1.0, per_channel=True),
    )
    limits["cardkit.card"] = (
        *gateway,
        # Most of the second at once: a card's interim writes leave 3 tokens to the final
        # (``KEEP``), and a reply writes at most 2 a second (``min_interval``).
        Limit(rate=CARD_OPS_PER_SECOND - CARD_BURST, burst=CARD_BURST, per_channel=True),
    )
    return limits


def rate_limited(exc: BaseException) -> float | None:
    """Seconds a refusal for rate asks to wait (429 ``99991400``: ``x-ogw-ratelimit-reset``;
    PATCH ``230020``: no hint, the per-message window is one second), else None."""
    if not isinstance(exc, FeishuAPIError):
        return None
    if exc.code == RATE_LIMITED:
        return exc.retry_after or 1.0
    if exc.code == PATCH_TOO_FAST:
        return 1.0
    return None


class FeishuPacer:
    """Every Feishu call goes through here, on the shared delivery scheduler: it waits for the
    route's slot (finals first; an interim call goes now or never: ``Skipped``), turns a
    refusal for rate into a pause of that route on every replica and retries; a 5xx is retried
    after a short pause in this process (not a rate: nothing to share)."""

    def __init__(
        self,
        *,
        budgets: Budgets | None = None,
        app: str = "app",
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0  # after a 5xx
        self.scheduler = Scheduler(
            PLATFORM,
            budgets if budgets is not None else MemoryBudgets(clock=clock),
            feishu_limits(),
            rate_limited=rate_limited,
            metrics=metrics,
            clock=clock,
            sleep=sleep,
        )
        self._account = self.scheduler.account(app)

    async def run(
        self,
        call: Callable[[], Awaitable[Any]],
        *,
        route: str = "api",
        channel: str = "",
        priority: Priority = Priority.FINAL,
    ) -> Any:
        account = self._account
        for attempt in range(MAX_TRIES):
            wait = self._paused_until - self._clock()
            if wait > 0:
                await self._sleep(wait)
            if priority is Priority.INTERIM:
                if not await account.now(route, priority=priority, channel=channel):
                    raise Skipped(route)
            else:
                await account.slot(route, priority=priority, channel=channel)
            try:
                return await call()
            except FeishuAPIError as exc:
                if attempt == MAX_TRIES - 1 or not await self._pauses(exc, route, channel):
                    raise
                if priority is Priority.INTERIM and rate_limited(exc) is not None:
                    raise Skipped(route) from None  # a later update (or the final) follows
        raise AssertionError("unreachable")

    async def _pauses(self, exc: FeishuAPIError, route: str, channel: str) -> bool:
        pause = rate_limited(exc)
        if pause is not None:
            if exc.code == RATE_LIMITED:  # the gateway's: the route, for the whole app
                await self._account.block(route, pause)
            if channel:  # or the message's / card's own limit
                await self._account.block(route, pause, channel=channel)
            return True
        if exc.status is not None and exc.status >= 500:
            self._paused_until = max(self._paused_until, self._clock() + 0.5)
            return True
        return False


class Skipped(Exception):
    """An interim call found no slot now: it is not made (a later one, or the final, follows)."""


class TenantToken:
    """The app's tenant access token, cached here and in the shared store."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        store: TokenStore,
        *,
        app_id: str,
        app_secret: str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._store = store
        self._app_id = app_id
        self._secret = app_secret
        self._wall = wall
        self._name = f"feishu:{app_id}"
        self._cached: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._fresh(self._cached):
            assert self._cached is not None
            return self._cached[0]
        async with self._lock:
            if not self._fresh(self._cached):
                stored = await self._store.get(self._name)
                shared = (stored.token, stored.expires_at) if stored else None
                self._cached = shared if self._fresh(shared) else await self._fetch()
            assert self._cached is not None
            return self._cached[0]

    async def discard(self, token: str) -> None:
        if self._cached is not None and self._cached[0] == token:
            self._cached = None
        await self._store.discard(self._name, token)

    def _fresh(self, token: tuple[str, float] | None) -> bool:
        return token is not None and token[1] - self._wall() > RENEW_BEFORE

    async def _fetch(self) -> tuple[str, float]:
        body = {"app_id": self._app_id, "app_secret": self._secret}
        data = await send(self._http, "POST", "/open-apis/auth/v3/tenant_access_token/internal",
                          json=body)  # fmt: skip
        token, expires_at = str(data["tenant_access_token"]), self._wall() + int(data["expire"])
        await self._store.put(self._name, token, expires_at=expires_at)
        return token, expires_at


class FeishuAPI:
    """The calls difybot makes, each paced, authorized, and retried once on a stale token."""

    def __init__(self, http: httpx.AsyncClient, token: TenantToken, pacer: FeishuPacer) -> None:
        self.http = http
        self.token = token
        self.pacer = pacer

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        route: str = "api",
        channel: str = "",
        priority: Priority = Priority.FINAL,
    ) -> dict[str, Any]:
        """``route`` names the call's limits (``ROUTES``), ``channel`` the message or card it
        counts against. An ``INTERIM`` call with no slot now is not made: ``{}``."""

        async def once() -> dict[str, Any]:
            return await self._authorized(method, path, json=json, params=params, files=files,
                                          data=data)  # fmt: skip

        try:
            result: dict[str, Any] = await self.pacer.run(
                once, route=route, channel=channel, priority=priority
            )
        except Skipped:
            return {}
        return result

    async def _authorized(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        token = await self.token.get()
        try:
            return await send(self.http, method, path, token=token, **kwargs)
        except FeishuAPIError as exc:
            if exc.code not in BAD_TOKEN:
                raise
            await self.token.discard(token)
        return await send(self.http, method, path, token=await self.token.get(), **kwargs)

    @asynccontextmanager
    async def download(self, path: str, params: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """A streamed GET (a message's resource); the response is 2xx, its body unread."""
        headers = {"Authorization": f"Bearer {await self.token.get()}"}
        request = self.http.build_request("GET", path, params=params, headers=headers)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise FeishuAPIError(f"GET {path}: {type(exc).__name__}") from exc
        try:
            if not response.is_success:
                await response.aread()
                raise to_error(response, path) or FeishuAPIError(f"GET {path}: refused")
            yield response
        finally:
            await response.aclose()

    # ---- the calls ----------------------------------------------------------------------------

    async def bot_info(self) -> dict[str, Any]:
        answer = await self.call("GET", "/open-apis/bot/v3/info", route="bot.info")
        bot = answer.get("bot")
        return bot if isinstance(bot, dict) else {}

    async def send(self, chat_id: str, msg_type: str, content: dict[str, Any], *,
                   uuid: str = "", priority: Priority = Priority.FINAL) -> str:  # fmt: skip
        body = {"receive_id": chat_id, "msg_type": msg_type, "content": _dumps(content)}
        if uuid:
            body["uuid"] = uuid
        params = {"receive_id_type": "chat_id"}
        answer = await self.call("POST", "/open-apis/im/v1/messages", json=body, params=params,
                                 route="im.message.create", priority=priority)  # fmt: skip
        return str(_data(answer).get("message_id") or "")

    async def reply(self, message_id: str, msg_type: str, content: dict[str, Any], *,
                    in_thread: bool, uuid: str = "",
                    priority: Priority = Priority.FINAL) -> str:  # fmt: skip
        body: dict[str, Any] = {"msg_type": msg_type, "content": _dumps(content),
                                "reply_in_thread": in_thread}  # fmt: skip
        if uuid:
            body["uuid"] = uuid
        path = f"/open-apis/im/v1/messages/{message_id}/reply"
        answer = await self.call("POST", path, json=body, route="im.message.reply",
                                 priority=priority)  # fmt: skip
        return str(_data(answer).get("message_id") or "")

    async def patch(self, message_id: str, card: dict[str, Any], *,
                    priority: Priority = Priority.FINAL) -> None:  # fmt: skip
        """An ``INTERIM`` patch with no slot now is not made (the next one, or the final)."""
        body = {"content": _dumps(card)}
        await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}", json=body,
                        route="im.message.patch", channel=message_id,
                        priority=priority)  # fmt: skip

    async def react(self, message_id: str, emoji: str) -> str:
        body = {"reaction_type": {"emoji_type": emoji}}
        path = f"/open-apis/im/v1/messages/{message_id}/reactions"
        answer = await self.call("POST", path, json=body, route="im.message.reaction.create",
                                 priority=Priority.SIGN_OF_LIFE)  # fmt: skip
        return str(_data(answer).get("reaction_id") or "")

    async def unreact(self, message_id: str, reaction_id: str) -> None:
        path = f"/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}"
        await self.call("DELETE", path, route="im.message.reaction.delete",
                        priority=Priority.CLEANUP)  # fmt: skip

    async def create_card(self, card: dict[str, Any]) -> str:
        body = {"type": "card_json", "data": _dumps(card)}
        answer = await self.call("POST", "/open-apis/cardkit/v1/cards", json=body,
                                 route="cardkit.card.create",
                                 priority=Priority.SIGN_OF_LIFE)  # fmt: skip
        return str(_data(answer).get("card_id") or "")

    async def card_content(self, card_id: str, element_id: str, text: str, sequence: int, *,
                           priority: Priority = Priority.FINAL) -> None:  # fmt: skip
        """An ``INTERIM`` write with no slot now is not made (the next one, or the final)."""
        path = f"/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content"
        await self.call("PUT", path, json={"content": text, "sequence": sequence},
                        route="cardkit.card", channel=card_id, priority=priority)  # fmt: skip

    async def card_settings(self, card_id: str, settings: dict[str, Any], sequence: int) -> None:
        path = f"/open-apis/cardkit/v1/cards/{card_id}/settings"
        await self.call("PATCH", path, json={"settings": _dumps(settings), "sequence": sequence},
                        route="cardkit.card", channel=card_id)  # fmt: skip

    async def card_update(self, card_id: str, card: dict[str, Any], sequence: int) -> None:
        body = {"card": {"type": "card_json", "data": _dumps(card)}, "sequence": sequence}
        await self.call("PUT", f"/open-apis/cardkit/v1/cards/{card_id}", json=body,
                        route="cardkit.card", channel=card_id)  # fmt: skip

    async def upload_image(self, data: bytes, filename: str) -> str:
        files = {"image": (filename, data)}
        answer = await self.call("POST", "/open-apis/im/v1/images", files=files,
                                 data={"image_type": "message"},
                                 route="im.image.create")  # fmt: skip
        return str(_data(answer).get("image_key") or "")

    async def upload_file(self, data: bytes, filename: str, file_type: str) -> str:
        files = {"file": (filename, data)}
        form = {"file_type": file_type, "file_name": filename}
        answer = await self.call("POST", "/open-apis/im/v1/files", files=files, data=form,
                                 route="im.file.create")  # fmt: skip
        return str(_data(answer).get("file_key") or "")


async def send(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    token: str = "",
    json: Any = None,
    params: dict[str, str] | None = None,
    files: dict[str, Any] | None = None,
    data: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One call; the answer's JSON when its code is 0, else FeishuAPIError."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if json is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    content = _dumps(json).encode() if json is not None else None
    try:
        response = await http.request(method, path, content=content, params=params, files=files,
                                      data=data, headers=headers)  # fmt: skip
    except httpx.HTTPError as exc:
        raise FeishuAPIError(f"{method} {path}: {type(exc).__name__}") from exc
    error = to_error(response, path)
    if error is not None:
        raise error
    return _json(response)


def to_error(response: httpx.Response, path: str) -> FeishuAPIError | None:
    """The error an answer carries (None: success)."""
    body = _json(response)
    code = body.get("code")
    if response.is_success and code in (0, None):
        return None
    reset = response.headers.get("x-ogw-ratelimit-reset", "")
    retry_after = float(reset) if reset.replace(".", "", 1).isdigit() else None
    msg = str(body.get("msg") or response.reason_phrase)
    return FeishuAPIError(
        f"{path}: {code} {msg}",
        status=response.status_code,
        code=str(code if code is not None else ""),
        retry_after=retry_after,
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _data(answer: dict[str, Any]) -> dict[str, Any]:
    data = answer.get("data")
    return data if isinstance(data, dict) else {}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def build_http(origin: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=origin, timeout=TIMEOUT, trust_env=True)

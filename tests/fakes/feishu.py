"""A loopback fake of the Feishu / Lark Open Platform (open.feishu.cn, open.larksuite.com).

``async with FakeFeishu() as feishu:`` serves, on 127.0.0.1 and a free port, the OpenAPI calls a
chat bot makes — tenant tokens, bot info, IM messages (send, reply in thread, PATCH a card,
recall), reactions, image/file upload and message-resource download, CardKit streaming cards —
plus the long connection (``feishu.socket``, see feishu_ws.py). Point lark-oapi at it with
``.domain(feishu.url)``, or any HTTP client at ``feishu.url + "/open-apis/..."``.

It behaves like the real service on the wire:
- tenant tokens live 2 hours; asking again with 30 minutes or more left returns the same one,
  with less left a new one (both valid); an expired, revoked or unknown token gets HTTP 400
  ``99991663``, a missing one ``99991661``;
- every API has the gateway's limits (50/s and 1000/min per app by default): HTTP 429,
  ``99991400 request trigger frequency limit`` and ``x-ogw-ratelimit-reset``; PATCH of one
  message is capped at 5/s (HTTP 400 ``230020``), a CardKit card at 10 operations/s;
- business errors come as HTTP 400 with ``{"code", "msg", "error": {"log_id"}}``, every answer
  carries ``X-Tt-Logid``.

Every request is recorded (:class:`FeishuCall`); ``fail_next`` scripts failures (error codes,
429, 5xx, hangs); ``wait_for``/``until`` synchronise on what the fake received.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.feishu_cards import CardKit
from tests.fakes.feishu_im import FeishuIM, json_body, ok, read_multipart
from tests.fakes.feishu_store import FeishuError, FeishuMessage, FeishuMessages, Media, text_of
from tests.fakes.feishu_ws import FakeLongConnection
from tests.fakes.waiters import Waiters

APP_ID = "cli_a5f0fa3e1c38d00e"
APP_SECRET = "fake-feishu-app-secret-0123456789"
TENANT_KEY = "2ca1d211f64f6438"
BOT_OPEN_ID = "ou_7d8a6e6df7621556ce0d21922b676706"
TOKEN_LIFETIME = 7200
REFRESH_WINDOW = 1800  # with less than this left, asking again mints a second token

Handler = Callable[["FeishuCall", web.Request], Awaitable[dict[str, Any] | web.StreamResponse]]


@dataclass
class FeishuCall:
    route: str  # e.g. "im.message.create"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # Authorization, Content-Type, User-Agent
    body: Any  # parsed JSON, or multipart fields (files as Media)
    at: float
    status: int = 0
    code: int | None = None  # the answer's business code (0 = accepted)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.code in (0, None)


@dataclass
class Scripted:
    code: int | None = None
    status: int = 400
    msg: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class IssuedToken:
    value: str
    expires_at: float


class FakeFeishu:
    def __init__(
        self,
        *,
        app_id: str = APP_ID,
        app_secret: str = APP_SECRET,
        tenant_key: str = TENANT_KEY,
        bot_open_id: str = BOT_OPEN_ID,
        bot_name: str = "Dify",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        api_per_second: int = 50,
        api_per_minute: int = 1000,
        patch_per_second: int = 5,
        streaming_timeout: float = 600.0,
    ) -> None:
        self.app_id, self.app_secret, self.tenant_key = app_id, app_secret, tenant_key
        self.bot_open_id, self.bot_name = bot_open_id, bot_name
        self.clock = clock
        self.api_per_second, self.api_per_minute = api_per_second, api_per_minute
        self.activate_status = 2  # 2 = enabled by the tenant
        self.messages = FeishuMessages(app_id=app_id, clock=clock, wall=wall)
        self.cards = CardKit(clock=clock, streaming_timeout=streaming_timeout)
        self.im = FeishuIM(self.messages, self.cards, app_id=app_id, tenant_key=tenant_key,
                           clock=clock, patch_per_second=patch_per_second)  # fmt: skip
        self.socket = FakeLongConnection(self)
        self.calls: list[FeishuCall] = []
        self.tokens: list[IssuedToken] = []
        self.revoked: set[str] = set()
        self.origin = ""
        self._scripts: defaultdict[str, deque[Scripted]] = defaultdict(deque)
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._waiters = Waiters("FakeFeishu")
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The origin lark-oapi takes as ``domain`` (FEISHU_API_BASE)."""
        return self.origin

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeFeishu:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, route, handler, auth in self._routes():
            app.router.add_route(method, path, self._endpoint(route, handler, auth=auth))
        self.socket.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._release.set()
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _routes(self) -> list[tuple[str, str, str, Handler, bool]]:
        api = "/open-apis"
        card = f"{api}/cardkit/v1/cards/{{card_id}}"
        return [
            ("POST", f"{api}/auth/v3/tenant_access_token/internal", "auth.tenant_access_token",
             self._tenant_token, False),
            ("GET", f"{api}/bot/v3/info", "bot.info", self._bot_info, True),
            *self.im.routes(api),
            ("POST", f"{api}/cardkit/v1/cards", "cardkit.card.create", self._card_create, True),
            ("PUT", card, "cardkit.card.update", self._card_update, True),
            ("PATCH", f"{card}/settings", "cardkit.card.settings", self._card_settings, True),
            ("PUT", f"{card}/elements/{{element_id}}/content", "cardkit.card_element.content",
             self._card_content, True),
            ("POST", "/callback/ws/endpoint", "ws.endpoint", self.socket.endpoint, False),
        ]  # fmt: skip

    # ---- scripting and reading ----------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        *,
        code: int | None = 2200,
        status: int = 400,
        msg: str = "scripted failure",
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``route`` fail. ``code=None`` answers a bare HTTP
        ``status`` (a gateway's 502/503 page) instead of a JSON body."""
        scripted = Scripted(code, status, msg, dict(headers or {}))
        self._scripts[route].extend(scripted for _ in range(times))

    def rate_limit_next(self, route: str, *, reset: int = 1, times: int = 1) -> None:
        headers = {"x-ogw-ratelimit-limit": str(self.api_per_second),
                   "x-ogw-ratelimit-reset": str(reset)}  # fmt: skip
        self.fail_next(route, code=99991400, status=429, headers=headers, times=times,
                       msg="request trigger frequency limit")  # fmt: skip

    def hang_next(self, route: str, *, times: int = 1) -> None:
        """The next calls get no answer until the fake closes (the client's timeout fires)."""
        self._scripts[route].extend(Scripted(hang=True) for _ in range(times))

    def expire_tokens(self) -> None:
        """As if two hours passed for every token issued so far."""
        for token in self.tokens:
            token.expires_at = min(token.expires_at, self.clock())

    def revoke(self, token: str) -> None:
        self.revoked.add(token)

    def calls_to(self, route: str) -> list[FeishuCall]:
        return [call for call in self.calls if call.route == route]

    def routes(self) -> list[str]:
        return [call.route for call in self.calls]

    async def wait_for(
        self,
        route: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
    ) -> list[FeishuCall]:
        """The calls of ``route`` once at least ``count`` have been answered."""

        def answered() -> bool:
            return sum(1 for call in self.calls_to(route) if call.status) >= count

        await self.until(answered, timeout, f"{count}x {route}")
        return self.calls_to(route)

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
        what: str = "",
    ) -> None:
        await self._waiters.until(predicate, timeout, what)

    def notify(self) -> None:
        self._waiters.notify()

    # ---- what people see ----------------------------------------------------------------------

    def user_message(
        self,
        *,
        chat_id: str,
        chat_type: str,
        sender: str,
        msg_type: str = "text",
        content: dict[str, Any] | None = None,
        mentions: list[dict[str, Any]] | None = None,
        root_id: str = "",
        thread_id: str = "",
        attachments: dict[str, Media] | None = None,
    ) -> FeishuMessage:
        """A message a person posted (what an ``im.message.receive_v1`` event reports); its
        ``attachments`` (key -> bytes) become downloadable through the resource API."""
        message = FeishuMessage(
            self.messages.new_id("om_"), chat_id, chat_type, msg_type, content or {"text": ""},
            sender, sender_type="user", root_id=root_id, parent_id=root_id,
            thread_id=thread_id, mentions=list(mentions or []),
        )  # fmt: skip
        for key, media in (attachments or {}).items():
            self.messages.resources[(message.message_id, key)] = media
        return self.messages.add(message)

    def text(self, message_id: str) -> str:
        """What the message shows now: text, post, inline card or the CardKit entity's text."""
        message = self.messages.messages[message_id]
        if message.card_id:
            return self.cards[message.card_id].text()
        return text_of(message.content)

    def bot_messages(self, chat_id: str | None = None) -> list[FeishuMessage]:
        return [
            m
            for m in self.messages.messages.values()
            if m.sender_type == "app" and not m.deleted and chat_id in (None, m.chat_id)
        ]

    # ---- HTTP plumbing ------------------------------------------------------------------------

    def _endpoint(self, route: str, handler: Handler, *, auth: bool) -> Any:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            call = await self._record(route, request)
            try:
                return await self._answer(call, request, handler, auth=auth)
            finally:
                self.notify()

        return endpoint

    async def _record(self, route: str, request: web.Request) -> FeishuCall:
        keep = ("Authorization", "Content-Type", "User-Agent")
        headers = {name: request.headers[name] for name in keep if name in request.headers}
        body: Any = None
        if request.content_type.startswith("multipart/"):
            body = await read_multipart(request)
        elif request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        call = FeishuCall(
            route, request.method, request.path, dict(request.query), headers, body, self.clock()
        )
        self.calls.append(call)
        return call

    async def _answer(
        self, call: FeishuCall, request: web.Request, handler: Handler, *, auth: bool
    ) -> web.StreamResponse:
        try:
            if self._scripts[call.route]:
                return await self._scripted(call, self._scripts[call.route].popleft())
            if auth:
                self._authorize(call)
            self._gateway_limit(call.route)
            result = await handler(call, request)
        except FeishuError as error:
            body = {"code": error.code, "msg": error.msg, "error": {"log_id": _log_id()}}
            return self._json(call, body, status=error.status, headers=error.headers)
        if isinstance(result, web.StreamResponse):
            call.status, call.code = 200, 0
            return result
        return self._json(call, result)

    async def _scripted(self, call: FeishuCall, scripted: Scripted) -> web.StreamResponse:
        if scripted.hang:
            await self._release.wait()  # the client has long given up by now
            call.status = 503
            return web.Response(status=503, text="closing")
        if scripted.code is None:
            call.status = scripted.status
            return web.Response(status=scripted.status, text="upstream unavailable")
        body = {"code": scripted.code, "msg": scripted.msg, "error": {"log_id": _log_id()}}
        return self._json(call, body, status=scripted.status, headers=scripted.headers)

    def _json(
        self,
        call: FeishuCall,
        body: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        call.status, call.code = status, body.get("code")
        merged = {"X-Tt-Logid": _log_id(), **(headers or {})}
        return web.Response(
            status=status,
            body=json.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json",
            charset="utf-8",
            headers=merged,
        )

    def _authorize(self, call: FeishuCall) -> None:
        header = call.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise FeishuError(99991661, "Missing access token for authorization. "
                              "Please make a request with token attached.")  # fmt: skip
        if not self.token_valid(header[7:].strip()):
            raise FeishuError(99991663, "Invalid access token for authorization. "
                              "Please make a request with token attached.")  # fmt: skip

    def token_valid(self, value: str) -> bool:
        now = self.clock()
        return value not in self.revoked and any(
            t.value == value and t.expires_at > now for t in self.tokens
        )

    def _gateway_limit(self, route: str) -> None:
        now = self.clock()
        for span, limit in ((1.0, self.api_per_second), (60.0, self.api_per_minute)):
            window = self._windows[f"{route}/{span}"]
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= limit:
                reset = max(1, int(window[0] + span - now + 0.999))
                headers = {"x-ogw-ratelimit-limit": str(limit),
                           "x-ogw-ratelimit-reset": str(reset)}  # fmt: skip
                raise FeishuError(99991400, "request trigger frequency limit", status=429,
                                  headers=headers)  # fmt: skip
        for span in (1.0, 60.0):
            self._windows[f"{route}/{span}"].append(now)

    # ---- auth and bot -------------------------------------------------------------------------

    async def _tenant_token(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("app_id") != self.app_id:
            raise FeishuError(10003, "invalid param: app_id")
        if body.get("app_secret") != self.app_secret:
            raise FeishuError(10014, "app secret invalid")
        now = self.clock()
        live = [t for t in self.tokens if t.expires_at > now and t.value not in self.revoked]
        token = live[-1] if live and live[-1].expires_at - now >= REFRESH_WINDOW else None
        if token is None:
            token = IssuedToken(f"t-g{secrets.token_hex(20)}", now + TOKEN_LIFETIME)
            self.tokens.append(token)
        expire = int(token.expires_at - now)
        return {"code": 0, "msg": "ok", "tenant_access_token": token.value, "expire": expire}

    async def _bot_info(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        bot = {"activate_status": self.activate_status, "app_name": self.bot_name,
               "avatar_url": "https://s1-imfile.feishucdn.com/static-resource/v1/fake",
               "ip_white_list": [], "open_id": self.bot_open_id}  # fmt: skip
        return {"code": 0, "msg": "ok", "bot": bot}

    # ---- CardKit ------------------------------------------------------------------------------

    async def _card_create(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        return ok({"card_id": self.cards.create(json_body(call)).card_id})

    async def _card_update(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        self.cards.update(request.match_info["card_id"], json_body(call))
        return ok()

    async def _card_settings(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        self.cards.settings(request.match_info["card_id"], json_body(call))
        return ok()

    async def _card_content(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        info = request.match_info
        self.cards.content(info["card_id"], info["element_id"], json_body(call))
        return ok()


def _log_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()

"""A loopback fake of the Telegram Bot API server, checked with aiogram pointed at it.

``async with FakeTelegram() as tg: Bot(token=tg.token, session=AiohttpSession(api=
TelegramAPIServer.from_base(tg.base_url)))``. Methods live at ``{base}/bot{token}/{method}``
(any case, GET or POST, query string, form, multipart or JSON), files at
``{base}/file/bot{token}/{path}``. Every answer has the Bot API's shape: ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error_code": N, "description": "...", "parameters":
{"retry_after": N}}`` (429 also sends Retry-After).

Behaviour and its sources are in the sibling modules: telegram_html (parse_mode HTML),
telegram_flood (429s), telegram_updates (getUpdates, webhook delivery), telegram_methods (the
methods and their errors), telegram_inbound (what people send), telegram_store (what they see).
Tests push updates through ``tg.inbound`` (``tg.inbound.text(chat, "hi")``), read what a person
would see (``tg.state.sent_by_bot(chat.id)``, ``tg.state.drafts``), assert on exact traffic
(``tg.calls_to("sendMessage")``), synchronise with ``await tg.wait_for("sendMessage")``, and
script failures with ``tg.fail_next(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web

from tests.fakes.telegram_flood import FloodControl, FloodLimits
from tests.fakes.telegram_inbound import Inbound
from tests.fakes.telegram_methods import ApiError, Args, BotApi, Described, Upload
from tests.fakes.telegram_store import BotState, CallbackQuery
from tests.fakes.telegram_updates import Delivery, UpdateQueue, WebhookPusher
from tests.fakes.waiters import Waiters

TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
MAX_UPLOAD = 50 * 1024 * 1024  # multipart uploads beyond this get 413
JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "allowed_updates",
        "link_preview_options",
    }
)


@dataclass
class TelegramCall:
    """One request the fake received (or a webhook reply it executed)."""

    method: str  # as the client spelled it
    args: dict[str, Any]  # query, form and JSON merged; JSON-typed parameters decoded
    files: dict[str, Upload]
    token: str
    content_type: str
    at: float
    via: str = "http"  # or "webhook-reply"
    verb: str = "POST"  # the HTTP method (the Bot API takes GET too)
    status: int = 0
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def description(self) -> str:
        return str(self.response.get("description", ""))


@dataclass
class Scripted:
    status: int
    description: str
    retry_after: int | None = None
    body: bytes | None = None  # a raw body instead of JSON (an HTML 502 from a proxy)
    hang: bool = False


class FakeTelegram:
    def __init__(
        self,
        *,
        token: str = TOKEN,
        username: str = "dify_fake_bot",
        first_name: str = "Dify",
        limits: FloodLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        privacy: bool = True,
        topics_enabled: bool = False,
        https_webhooks_only: bool = False,
        webhook_retry_scale: float = 1.0,
        callback_window: float = 15.0,
    ) -> None:
        """``clock``/``sleep`` drive flood limits, long-poll timeouts and callback expiry
        (a ManualClock makes them instant); ``https_webhooks_only`` applies api.telegram.org's
        webhook rules (https, ports 80/88/443/8443) instead of a local Bot API server's."""
        self.token = token
        bot_id = int(token.partition(":")[0])
        self._bot_id = bot_id
        self.bot: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": not privacy,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
            "has_topics_enabled": topics_enabled,
            "allows_users_to_create_topics": False,
        }
        self.clock, self.wall = clock, wall
        self.state = BotState(self.bot)
        self.flood = FloodControl(limits or FloodLimits(), clock)
        self.queue = UpdateQueue(clock=clock, sleep=sleep)
        self.webhook = WebhookPusher(
            self.queue, self._webhook_reply, retry_scale=webhook_retry_scale, wall=wall
        )
        self.api = BotApi(
            self.state,
            flood=self.flood,
            queue=self.queue,
            webhook=self.webhook,
            clock=clock,
            wall=wall,
            https_webhooks_only=https_webhooks_only,
            callback_window=callback_window,
        )
        self.inbound = Inbound(self.state, self.queue, wall=wall, clock=clock, privacy=privacy)
        self.calls: list[TelegramCall] = []
        self.downloads: list[str] = []  # file paths fetched from /file/bot<token>/
        self.revoked: set[str] = set()
        self.origin = ""
        self._scripts: defaultdict[str, deque[Scripted]] = defaultdict(deque)
        self._waiters = Waiters("FakeTelegram")
        self._hangs: list[asyncio.Event] = []
        self._runner: web.AppRunner | None = None
        self.queue.on_change = self._queue_changed
        self.webhook.on_delivery = lambda delivery: self.notify()

    @property
    def base_url(self) -> str:
        """What TELEGRAM_API_BASE points at."""
        return self.origin

    @property
    def bot_id(self) -> int:
        return self._bot_id

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=MAX_UPLOAD + (1 << 20))
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Held requests end first, or the server's shutdown would wait for them.
        self.queue.terminate_poll("Internal Server Error: restart")
        for hang in self._hangs:
            hang.set()
        await self.webhook.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def push(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Queue a raw update (a captured payload) for the bot, learning its chats, people and
        messages first so the bot can answer it; ``tg.inbound`` builds updates for you."""
        self.state.learn(update)
        if "callback_query" in update:
            body = update["callback_query"]
            message = body.get("message") or {}
            self.state.callbacks[str(body["id"])] = CallbackQuery(
                str(body["id"]),
                body["from"],
                (message.get("chat") or {}).get("id"),
                message.get("message_id"),
                str(body.get("data", "")),
                self.clock(),
            )
        return self.queue.push(update)

    # ---- scripting ----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str = "Internal Server Error",
        *,
        retry_after: int | None = None,
        times: int = 1,
        body: bytes | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` fail with this answer (auth still first).
        429 with ``retry_after`` gets the Bot API's "Too Many Requests: retry after N"."""
        if status == 429 and retry_after is not None:
            description = f"Too Many Requests: retry after {retry_after}"
        script = Scripted(status, description, retry_after, body)
        self._scripts[method.lower()].extend(script for _ in range(times))

    def hang_next(self, method: str, *, times: int = 1) -> None:
        """The next calls of ``method`` never get an answer (until the fake closes)."""
        self._scripts[method.lower()].extend(Scripted(0, "", hang=True) for _ in range(times))

    def revoke_token(self) -> str:
        """BotFather's /revoke: a new token for the same bot; the old one gets 401."""
        self.revoked.add(self.token)
        secret = "".join(reversed(self.token.partition(":")[2]))
        self.token = f"{self.bot_id}:{secret}"
        return self.token

    def block(self, chat_id: int) -> None:
        """The user blocks the bot (private chat) or removes it (group): sends get 403."""
        self.state.chats[chat_id].blocked = True

    # ---- reading and waiting ------------------------------------------------------------

    def calls_to(self, method: str) -> list[TelegramCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    @property
    def rate_limited(self) -> list[tuple[str, int]]:
        """(method, chat_id) of calls the flood limits refused (not scripted ones)."""
        return self.api.rate_limited

    @property
    def deliveries(self) -> list[Delivery]:
        return self.webhook.deliveries

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
    ) -> list[TelegramCall]:
        await self.until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count}x {method}")
        return self.calls_to(method)

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
        what: str = "",
    ) -> None:
        await self._waiters.until(predicate, timeout, what)

    def _queue_changed(self) -> None:
        self.webhook.poke()
        self.notify()

    def notify(self) -> None:
        self._waiters.notify()

    # ---- webhook side -------------------------------------------------------------------

    async def deliver(self, update: dict[str, Any] | None, timeout: float = 5.0) -> Delivery:  # noqa: ASYNC109
        """Wait until the webhook answered ``update`` (pushed already) once more; its Delivery."""
        assert update is not None, "the update was not pushed (privacy mode or allowed_updates)"
        update_id: int = update["update_id"]
        seen = sum(d.update_id == update_id for d in self.deliveries)

        def answered() -> bool:
            return sum(d.update_id == update_id for d in self.deliveries) > seen

        self.webhook.poke()
        await self.until(answered, timeout, f"webhook answer to update {update['update_id']}")
        return [d for d in self.deliveries if d.update_id == update["update_id"]][-1]

    async def post_update(
        self, url: str, update: dict[str, Any], *, secret: str | None = None
    ) -> Delivery:
        """POST one update to ``url`` exactly as Telegram would, once, outside the queue:
        redeliveries, forged or missing secrets (default: the webhook's secret; ``""`` sends
        no header). A webhook reply in the answer is recorded, not executed."""
        pusher = WebhookPusher(self.queue, self._webhook_reply, wall=self.wall)
        pusher.start(url, self.webhook.secret if secret is None else secret, 1)
        try:
            return await pusher.post(update)
        finally:
            await pusher.close()

    async def _webhook_reply(self, method: str, values: dict[str, Any]) -> None:
        call = TelegramCall(
            method,
            _decoded(values),
            {},
            self.token,
            "webhook-reply",
            self.clock(),
            via="webhook-reply",
        )
        self.calls.append(call)
        await self._run(call, method.lower(), Args(call.args))

    # ---- HTTP ---------------------------------------------------------------------------

    async def _method(self, request: web.Request) -> web.StreamResponse:
        token, method = request.match_info["token"], request.match_info["method"]
        try:
            values, files = await _arguments(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "Request Entity Too Large")
        call = TelegramCall(
            method,
            _decoded(values),
            files,
            token,
            request.content_type,
            self.clock(),
            verb=request.method,
        )
        self.calls.append(call)
        self.notify()  # a held call (long poll, hang) is visible to wait_for at once
        try:
            auth = self._auth_error(token)
            if auth is not None:
                return self._answer(call, auth)
            if sum(len(f.data) for f in files.values()) > MAX_UPLOAD:
                return self._answer(call, ApiError(413, "Request Entity Too Large"))
            scripted = self._scripts[method.lower()]
            if scripted:
                return await self._scripted(call, scripted.popleft())
            return await self._run(call, method.lower(), Args(call.args, files))
        finally:
            self.notify()

    def _auth_error(self, token: str) -> ApiError | None:
        """ClientManager::send's checks, then Telegram's verdict on a well-formed token."""
        bot_id, colon, _ = token.partition(":")
        if not colon or token.startswith("0") or len(token) > 80 or "/" in token:
            return ApiError(401, "Unauthorized: invalid token specified")
        if not re.fullmatch(r"\d+", bot_id) or not 0 < int(bot_id) < 1 << 54:
            return ApiError(401, "Unauthorized: invalid token specified")
        if token != self.token:
            return ApiError(401, "Unauthorized")
        return None

    async def _scripted(self, call: TelegramCall, script: Scripted) -> web.StreamResponse:
        if script.hang:
            hang = asyncio.Event()
            self._hangs.append(hang)
            await hang.wait()
            return self._answer(call, ApiError(504, "Gateway Timeout"))
        if script.body is not None:
            call.status = script.status
            return web.Response(status=script.status, body=script.body, content_type="text/html")
        error = ApiError(script.status, script.description, retry_after=script.retry_after)
        return self._answer(call, error)

    async def _run(self, call: TelegramCall, method: str, args: Args) -> web.Response:
        handler = self.api.methods.get(method)
        if handler is None:
            return self._answer(call, ApiError(404, "Not Found: method not found"))
        try:
            result = await handler(args)
        except ApiError as exc:
            return self._answer(call, exc)
        return self._answer(call, result)

    def _answer(self, call: TelegramCall, outcome: Any) -> web.Response:
        if isinstance(outcome, ApiError):
            call.status = outcome.code
            response = _error(outcome.code, outcome.description, outcome.retry_after)
            call.response = json.loads(response.text or "{}")
            return response
        body: dict[str, Any] = {"ok": True}
        if isinstance(outcome, Described):
            body.update(result=outcome.result, description=outcome.description)
        else:
            body["result"] = outcome
        call.status, call.response = 200, body
        return web.json_response(body, dumps=_dumps)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        stored = self.state.files.by_path.get(path)
        if request.match_info["token"] != self.token or stored is None:
            return _error(404, "Not Found")
        self.downloads.append(path)
        self.notify()
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, "Not Found")


def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    headers = {}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
        headers["Retry-After"] = str(retry_after)
    return web.json_response(body, status=code, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decoded(values: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(values)
    for name in JSON_PARAMS & decoded.keys():
        if isinstance(decoded[name], str):
            with contextlib.suppress(ValueError):  # else left as sent: the method says why
                decoded[name] = json.loads(decoded[name])
    return decoded


async def _arguments(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Query string, then the body: urlencoded, multipart (files apart) or a JSON object."""
    values: dict[str, Any] = dict(request.query)
    files: dict[str, Upload] = {}
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue  # nested multiparts: not something the Bot API takes
            data = await part.read()
            if part.filename:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                files[part.name] = Upload(part.name, part.filename, content_type, bytes(data))
            else:
                values[part.name] = bytes(data).decode()
        return values, files
    raw = await request.read()
    if not raw:
        return values, files
    if request.content_type == "application/json":
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            values.update(parsed)
    else:
        values.update(parse_qsl(raw.decode(), keep_blank_values=True))
    return values, files

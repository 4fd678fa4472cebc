"""A loopback fake of the LINE Messaging API: ``api.line.me`` and the data API ``api-data.line.me``
(content downloads) on two ports, recording every call and holding what each chat shows.

Built from developers.line.biz (Messaging API reference) and line/line-openapi's
``messaging-api.yml``; checked with line-bot-sdk v3 in tests/test_fake_line.py. What it does like
LINE: Bearer channel access tokens (a long-lived one, and stateless ones from ``/oauth2/v3/token``
that expire after 15 minutes) with LINE's 401 body; reply tokens that work once and expire (about a
minute; ``reply_token_ttl``) answering 400 ``Invalid reply token``; push with ``X-Line-Retry-Key``
(a key already accepted answers 409 with ``x-line-accepted-request-id`` and the sent messages, a key
on any other API is a 400); 1..5 messages per call, the message checks of ``line_checks``; the
loading animation in 1:1 chats only; content on the data origin with 202 while a large video or
audio is being prepared; 429 with LINE's body and no Retry-After (per-second limits, or the monthly
push quota); ``fail_next`` for 5xx/429, hangs, and failures *after* a push was accepted (the case
retry keys exist for). Every response carries ``x-line-request-id``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.line_checks import check_messages, error, invalid_body
from tests.fakes.line_data import LineContents
from tests.fakes.line_tokens import ACCESS_TOKEN, LineTokens
from tests.fakes.line_webhook import BOT_USER_ID, CHANNEL_ID, CHANNEL_SECRET, LineEvents

__all__ = ["ACCESS_TOKEN", "MONTHLY_LIMIT", "RATE_LIMITED", "FakeLine", "LineCall", "Sent"]
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."
RETRY_KEY_PATHS = ("/v2/bot/message/push",)  # also multicast/narrowcast/broadcast, not faked

Handler = Callable[["LineCall"], Awaitable[web.StreamResponse]]


@dataclass
class LineCall:
    """One request the fake received, and what it answered."""

    origin: str  # "api" or "data"
    method: str
    path: str
    headers: dict[str, str]  # the ones that matter: Authorization, X-Line-Retry-Key, ...
    json: Any
    at: float
    params: dict[str, str] = field(default_factory=dict)  # path parameters (messageId, ...)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: int = 0

    @property
    def retry_key(self) -> str | None:
        return self.headers.get("X-Line-Retry-Key")


@dataclass
class Sent:
    """One message as it now shows in a chat."""

    id: str
    chat: str
    message: dict[str, Any]
    via: str  # "reply" or "push"
    request_id: str
    quote_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@dataclass
class Failure:
    """A scripted answer; ``after_accept`` delivers first (LINE accepted, the answer got lost)."""

    status: int
    body: dict[str, Any]
    after_accept: bool = False
    hang: bool = False


@dataclass
class _ReplyToken:
    chat: str
    issued: float
    used: bool = False


class FakeLine:
    """``async with FakeLine() as line:`` then ``Configuration(host=line.api_url)`` for the
    Messaging API and ``Configuration(host=line.data_url)`` for content."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        reply_token_ttl: float = 60.0,
        push_quota: int | None = None,
        per_second: int = 2000,  # "other API endpoints: 2,000 requests per second"
    ) -> None:
        self.clock = clock
        self.reply_token_ttl = reply_token_ttl
        self.push_quota = push_quota  # messages a month; None: unlimited plan
        self.per_second = per_second
        self.channel_id, self.channel_secret, self.bot_user_id = (
            CHANNEL_ID, CHANNEL_SECRET, BOT_USER_ID,
        )  # fmt: skip
        self.calls: list[LineCall] = []
        self.chats: defaultdict[str, list[Sent]] = defaultdict(list)
        self.known_chats: set[str] = set()
        self.profiles: dict[str, dict[str, Any]] = {}
        self.contents = LineContents()
        self.tokens = LineTokens(CHANNEL_ID, CHANNEL_SECRET, clock)
        self.loading: dict[str, float] = {}  # user id -> when the animation would end
        self.pushed = 0  # messages billed this month
        self.events = LineEvents(
            reply_tokens=self.issue_reply_token, on_chat=self.add_chat, on_content=self.contents.add
        )
        self.api_url = self.data_url = ""
        self._reply_tokens: dict[str, _ReplyToken] = {}
        self._accepted: dict[str, tuple[str, list[Sent]]] = {}  # retry key -> request, sent
        self._scripts: defaultdict[str, deque[Failure]] = defaultdict(deque)
        self._limits: dict[str, int] = {}
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._released = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._ids = itertools.count(600_000_000_000_000_001)

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeLine:
        api = web.Application()
        for path, handler in {
            "/v2/bot/message/reply": self._reply,
            "/v2/bot/message/push": self._push,
            "/v2/bot/chat/loading/start": self._loading,
            "/oauth2/v3/token": self._issue_token,
        }.items():
            api.router.add_post(path, self._wrap("api", handler))
        for path, handler in {
            "/v2/bot/info": self._info,
            "/v2/bot/profile/{userId}": self._profile,
            "/v2/bot/message/quota": self._quota,
            "/v2/bot/message/quota/consumption": self._consumption,
        }.items():
            api.router.add_get(path, self._wrap("api", handler))
        data = web.Application()
        for suffix in ("", "/preview", "/transcoding"):
            data.router.add_get(
                f"/v2/bot/message/{{messageId}}/content{suffix}", self._wrap("data", self._content)
            )
        self.api_url = await self._serve(api)
        self.data_url = await self._serve(data)
        return self

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def __aexit__(self, *exc_info: object) -> None:
        self._released.set()  # hung handlers answer, so the runners can close
        for runner in self._runners:
            await runner.cleanup()

    # ---- what tests set up ----------------------------------------------------------------

    def add_chat(self, chat: str, profile: dict[str, Any] | None = None) -> None:
        """A user, group or room the bot can push to (events register theirs themselves)."""
        self.known_chats.add(chat)
        if profile is not None:
            self.profiles[chat] = profile

    def issue_reply_token(self, chat: str) -> str:
        token = secrets.token_hex(16)
        self._reply_tokens[token] = _ReplyToken(chat, self.clock())
        return token

    def add_content(self, message_id: str, data: bytes, content_type: str, **kw: Any) -> None:
        self.contents.add(message_id, data, content_type, **kw)

    def fail_next(
        self,
        path: str,
        status: int = 500,
        *,
        times: int = 1,
        message: str | None = None,
        after_accept: bool = False,
        hang: bool = False,
    ) -> None:
        """The next ``times`` calls to ``path`` fail; 429 gets LINE's rate-limit body."""
        default = RATE_LIMITED if status == 429 else "Internal server error"
        failure = Failure(status, error(message or default), after_accept, hang)
        self._scripts[path].extend(failure for _ in range(times))

    def limit(self, path: str, per_second: int) -> None:
        self._limits[path] = per_second

    def release_hangs(self) -> None:
        """Hung calls answer now; a hang scripted later waits for the next release."""
        self._released.set()
        self._released = asyncio.Event()

    # ---- what tests read ------------------------------------------------------------------

    def calls_to(self, path: str) -> list[LineCall]:
        return [c for c in self.calls if c.path == path]

    def texts(self, chat: str) -> list[str]:
        return [s.message["text"] for s in self.chats[chat] if s.message["type"] == "text"]

    def quick_reply(self, chat: str) -> list[str]:
        """Labels of the quick-reply buttons the chat shows: only the last message's count."""
        if not self.chats[chat]:
            return []
        items = self.chats[chat][-1].message.get("quickReply", {}).get("items", [])
        return [item["action"].get("label", "") for item in items]

    def is_loading(self, user: str) -> bool:
        return self.loading.get(user, 0.0) > self.clock()

    async def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[LineCall]:  # noqa: ASYNC109
        await self.until(lambda: len(self.calls_to(path)) >= count, timeout, f"{count}x {path}")
        return self.calls_to(path)

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
        what: str = "",
    ) -> None:
        if predicate():
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        except TimeoutError:
            raise TimeoutError(f"FakeLine: no {what or 'condition'} within {timeout} s") from None
        finally:
            self._waiters.remove(entry)

    def _notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    # ---- the request pipeline -------------------------------------------------------------

    def _wrap(self, origin: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                call = await self._record(origin, request)
            except ConnectionResetError:  # the client died mid-body (a killed replica), as LINE
                raise web.HTTPBadRequest() from None  # would see it: nothing recorded or done
            self._notify()  # a hung call is waitable as soon as it arrives
            try:
                response = await self._answer(call, request, handler)
                call.status = response.status
                response.headers["x-line-request-id"] = call.request_id
                return response
            finally:
                self._notify()

        return route

    async def _record(self, origin: str, request: web.Request) -> LineCall:
        body = await request.read()
        kept = ("Authorization", "X-Line-Retry-Key", "Content-Type", "User-Agent")
        headers = {k: request.headers[k] for k in kept if k in request.headers}
        parsed: Any = None
        if body and request.content_type == "application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = ValueError(body.decode(errors="replace"))
        elif body:
            parsed = dict(await request.post())
        call = LineCall(origin, request.method, request.path, headers, parsed, self.clock())
        call.params = dict(request.match_info)
        self.calls.append(call)
        return call

    async def _answer(
        self, call: LineCall, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        refusal = self._refusal(call)
        if refusal is not None:
            return refusal
        failure = self._scripts[call.path].popleft() if self._scripts[call.path] else None
        if failure is not None and not failure.after_accept:
            return await self._fail(failure)
        response = await handler(call)
        if failure is not None and response.status < 300:
            return await self._fail(failure)  # accepted and delivered, then the answer is lost
        return response

    async def _fail(self, failure: Failure) -> web.Response:
        if failure.hang:
            await self._released.wait()  # until release_hangs() or the fake closes
        return web.json_response(failure.body, status=failure.status)

    def _refusal(self, call: LineCall) -> web.Response | None:
        if isinstance(call.json, ValueError):
            return _json(400, error("The request body could not be parsed as JSON (line: 1)"))
        auth = self.tokens.refusal(call.headers.get("Authorization"))
        if call.path != "/oauth2/v3/token" and auth is not None:
            return _json(401, error(auth))
        if call.retry_key is not None and call.path not in RETRY_KEY_PATHS:
            return _json(400, error("X-Line-Retry-Key header is not supported for this API"))
        if not self._allowed(call.path):
            return _json(429, error(RATE_LIMITED))  # LINE sends no Retry-After
        return None

    def _allowed(self, path: str) -> bool:
        limit = self._limits.get(path, self.per_second)
        window, now = self._windows[path], self.clock()
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    # ---- sending --------------------------------------------------------------------------

    async def _reply(self, call: LineCall) -> web.Response:
        body = call.json if isinstance(call.json, dict) else {}
        details = check_messages(body.get("messages"))
        if not body.get("replyToken"):
            details.insert(0, {"message": "May not be empty", "property": "replyToken"})
        if details:
            return _json(400, invalid_body(details))
        token = self._reply_tokens.get(body["replyToken"])
        if token is None or token.used or self.clock() - token.issued > self.reply_token_ttl:
            return _json(400, error("Invalid reply token"))
        token.used = True
        sent = self._deliver(token.chat, body, call, "reply")
        return _json(200, {"sentMessages": [_sent_json(s) for s in sent]})

    async def _push(self, call: LineCall) -> web.Response:
        body = call.json if isinstance(call.json, dict) else {}
        key = call.retry_key
        if key is not None and not _is_uuid(key):
            return _json(400, error("The retry key must be a UUID in hexadecimal format"))
        if key in self._accepted:
            request_id, sent = self._accepted[key]
            conflict = error("The retry key is already accepted")
            conflict["sentMessages"] = [_sent_json(s) for s in sent]
            return _json(409, conflict, **{"x-line-accepted-request-id": request_id})
        details = check_messages(body.get("messages"))
        if not body.get("to"):
            details.insert(0, {"message": "May not be empty", "property": "to"})
        if details:
            return _json(400, invalid_body(details))
        count = len(body["messages"])
        if self.push_quota is not None and self.pushed + count > self.push_quota:
            return _json(429, error(MONTHLY_LIMIT))
        if body["to"] not in self.known_chats:
            return _json(400, error("Failed to send messages"))
        self.pushed += count
        sent = self._deliver(body["to"], body, call, "push")
        if key is not None:
            self._accepted[key] = (call.request_id, sent)
        return _json(200, {"sentMessages": [_sent_json(s) for s in sent]})

    def _deliver(self, chat: str, body: dict[str, Any], call: LineCall, via: str) -> list[Sent]:
        sent = [
            Sent(str(next(self._ids)), chat, message, via, call.request_id)
            for message in body["messages"]
        ]
        self.chats[chat].extend(sent)
        self.loading.pop(chat, None)  # a message from the bot ends the animation
        return sent

    async def _loading(self, call: LineCall) -> web.Response:
        body = call.json if isinstance(call.json, dict) else {}
        chat, seconds = body.get("chatId"), body.get("loadingSeconds", 20)
        details = []
        if not isinstance(chat, str) or not chat.startswith("U"):
            # Group chats and multi-person chats can't be specified.
            details.append({"message": "Must be a user ID", "property": "chatId"})
        if not isinstance(seconds, int) or seconds % 5 or not 5 <= seconds <= 60:
            details.append(
                {
                    "message": "Must be a multiple of 5 between 5 and 60",
                    "property": "loadingSeconds",
                }
            )
        if details:
            return _json(400, invalid_body(details))
        assert isinstance(chat, str)
        self.loading[chat] = self.clock() + seconds  # a second request overrides the first
        return _json(202, {})

    # ---- reading --------------------------------------------------------------------------

    async def _info(self, call: LineCall) -> web.Response:
        return _json(200, {
            "userId": self.bot_user_id, "basicId": "@012difyb", "displayName": "Dify Bot",
            "pictureUrl": "https://profile.line-scdn.net/0h-difybot", "chatMode": "bot",
            "markAsReadMode": "auto",
        })  # fmt: skip

    async def _profile(self, call: LineCall) -> web.Response:
        profile = self.profiles.get(call.params["userId"])
        return _json(200, profile) if profile else _json(404, error("Not found"))

    async def _quota(self, call: LineCall) -> web.Response:
        if self.push_quota is None:
            return _json(200, {"type": "none"})
        return _json(200, {"type": "limited", "value": self.push_quota})

    async def _consumption(self, call: LineCall) -> web.Response:
        return _json(200, {"totalUsage": self.pushed})

    async def _content(self, call: LineCall) -> web.StreamResponse:
        suffix = call.path.rsplit("/content", 1)[1]
        return self.contents.answer(call.params["messageId"], suffix)

    async def _issue_token(self, call: LineCall) -> web.Response:
        status, body = self.tokens.issue_stateless(call.json if isinstance(call.json, dict) else {})
        return _json(status, body)


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _sent_json(sent: Sent) -> dict[str, str]:
    return {"id": sent.id, "quoteToken": sent.quote_token}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36

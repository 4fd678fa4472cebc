"""A loopback fake of the Slack Web API (plus response_urls and a Socket Mode websocket).

Records every call with its merged arguments (query string, form body and JSON body, as
slack-sdk mixes them per method), keeps the messages it holds so tests can read what a person
would see, enforces a Tier-3 budget on ``chat.update``, implements native streaming (switchable
off), and can be scripted to fail: 429 with Retry-After, ``msg_too_long``, ``channel_not_found``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.slack_files import SlackFiles
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.slack_store import SlackMessages
from tests.fakes.slack_tiers import RateTiers

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]
    at: float


@dataclass
class Scripted:
    error: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    """``async with FakeSlack() as slack: AsyncWebClient(base_url=slack.url)``."""

    def __init__(
        self,
        *,
        team: str = "T0001",
        bot_user: str = "UBOT",
        bot_id: str = "BBOT",
        clock: Callable[[], float] = time.monotonic,
        update_limit: int = 50,
        retry_after: int = 1,
        native_streaming: bool = True,
        tiers: RateTiers | None = None,
    ) -> None:
        self.team, self.bot_user, self.bot_id = team, bot_user, bot_id
        self.clock = clock
        self.update_limit = update_limit  # chat.update per rolling minute (Tier 3)
        self.retry_after = retry_after
        self.native_streaming = native_streaming
        self.tiers = tiers  # every method's tier (benchmarks); None: only chat.update's limit
        self.limited: list[SlackCall] = []  # calls refused with 429 by a limit (not scripted)
        self.on_call: Callable[[SlackCall, web.Response], None] | None = None  # benchmarks
        self.flaky: Callable[[str], bool] | None = None  # benchmarks: 429 when it says so
        self.stream_appends_before_expiry: int | None = None  # then message_not_in_streaming_state
        self.not_member: set[str] = set()  # channels where posting gives channel_not_found
        self.max_chars = 40_000  # longer message content gets msg_too_long
        self.calls: list[SlackCall] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_urls
        self.messages = SlackMessages(self.bot_user, self.bot_id)
        self.socket = FakeSocketMode(self)
        self.files = SlackFiles(BOT_TOKEN, lambda: self.origin)  # files.*, downloads, uploads
        self.origin = ""
        self._scripts: defaultdict[str, deque[Scripted]] = defaultdict(deque)
        self._updates: deque[float] = deque()
        self._triggers: set[str] = set()  # views.open: each trigger_id opens one modal
        self._appends: dict[str, int] = defaultdict(int)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"{self.origin}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.origin}/response/{name}"

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response_url)
        app.router.add_get("/link", self.socket.handle)
        self.files.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- scripting and reading ----------------------------------------------------------

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        self._scripts[method].extend(Scripted(error) for _ in range(times))

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(self.retry_after if retry_after is None else retry_after)}
        self._scripts[method].extend(Scripted("ratelimited", 429, headers) for _ in range(times))

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.args for call in self.calls if call.method == method]

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
    ) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count}x {method}")
        return self.calls_to(method)

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
            raise TimeoutError(f"FakeSlack: no {what or 'condition'} within {timeout} s") from None
        finally:
            self._waiters.remove(entry)

    def notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    def new_ts(self) -> str:
        n = next(self._ids)
        return f"{1_700_000_000 + n}.{n:06d}"

    # ---- HTTP ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        call = SlackCall(method, args, self.clock())
        self.calls.append(call)
        try:
            response = self._answer(method, args, request.headers.get("Authorization", ""))
            if self.on_call is not None:
                self.on_call(call, response)
            return response
        finally:
            self.notify()

    def _answer(self, method: str, args: dict[str, Any], auth: str) -> web.Response:
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if auth != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.flaky is not None and self.flaky(method):
            headers = {"Retry-After": str(self.retry_after)}
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers=headers
            )
        if self._scripts[method]:
            scripted = self._scripts[method].popleft()
            body = {"ok": False, "error": scripted.error}
            return web.json_response(body, status=scripted.status, headers=scripted.headers)
        if not self._allowed(method, args):
            self.limited.append(self.calls[-1])  # this call's own record
            headers = {"Retry-After": str(self.retry_after)}
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers=headers
            )
        result = self._handle(method, args)
        return web.json_response(
            {"ok": True, **result} if "error" not in result else {"ok": False, **result}
        )

    def _allowed(self, method: str, args: dict[str, Any]) -> bool:
        if self.tiers is not None:
            return self.tiers.allow(
                method, str(args.get("channel") or args.get("channel_id") or "")
            )
        return method != "chat.update" or self._update_allowed()

    def _update_allowed(self) -> bool:
        now = self.clock()
        while self._updates and self._updates[0] <= now - 60:
            self._updates.popleft()
        if len(self._updates) >= self.update_limit:
            return False
        self._updates.append(now)
        return True

    def _handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        m = self.messages
        if method == "auth.test":
            return {
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "dify",
                "team_id": self.team,
                "user_id": self.bot_user,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "apps.connections.open":
            return {"url": self.socket.url}
        if method == "chat.postMessage":
            if args["channel"] in self.not_member:
                return {"error": "channel_not_found"}
            return self._sized(args) or m.post(self.new_ts(), args)
        if method == "chat.update":
            return self._sized(args) or m.update(args)
        if method == "chat.delete":
            return m.delete(args)
        if method == "chat.postEphemeral":
            return {"message_ts": self.new_ts()}
        if method == "conversations.history":
            return {"messages": m.history(str(args["channel"])), "has_more": False}
        if method.startswith("chat.") and method.endswith("Stream"):
            return self._stream(method, args)
        if method.startswith("assistant.threads."):
            return {}
        if method == "views.open":
            return self._open_view(args)
        if method.startswith("files."):
            return self.files.handle(method, args)
        return {"error": "unknown_method"}

    def _open_view(self, args: dict[str, Any]) -> dict[str, Any]:
        """``views.open``: a click's ``trigger_id`` opens one modal, once (Slack: it expires
        after 3 s and cannot be reused)."""
        trigger, view = str(args.get("trigger_id") or ""), args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not trigger or not isinstance(view, dict) or view.get("type") != "modal":
            return {"error": "invalid_arguments"}
        if trigger in self._triggers:
            return {"error": "expired_trigger_id"}
        self._triggers.add(trigger)
        return {"view": {**view, "id": f"V{len(self._triggers):08d}", "state": {"values": {}}}}

    def _sized(self, args: dict[str, Any]) -> dict[str, Any] | None:
        return (
            {"error": "msg_too_long"} if len(self.messages.content(args)) > self.max_chars else None
        )

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if not self.native_streaming:
            return {"error": "channel_type_not_supported"}
        if method == "chat.startStream":
            if not args.get("thread_ts"):
                return {"error": "invalid_arguments"}
            return self.messages.start_stream(self.new_ts(), args)
        ts = str(args.get("ts"))
        self._appends[ts] += 1
        expiry = self.stream_appends_before_expiry
        if expiry is not None and self._appends[ts] > expiry:
            return {"error": "message_not_in_streaming_state"}
        return self.messages.append_stream(args, stop=method == "chat.stopStream")

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({"name": request.match_info["name"], **body})
        self.notify()
        return web.Response(text="ok")


async def _arguments(request: web.Request) -> dict[str, Any]:
    """slack-sdk sends JSON for chat.*, form or query strings for others: merge them all."""
    args: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if not raw:
        return args
    if request.content_type == "application/json":
        args.update(json.loads(raw))
    else:
        args.update(parse_qsl(raw.decode()))
    for name in ("blocks", "chunks"):  # form-encoded JSON arrays
        if isinstance(args.get(name), str):
            args[name] = json.loads(args[name])
    return args

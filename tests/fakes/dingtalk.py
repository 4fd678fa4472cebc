"""A loopback fake of DingTalk's server side, built from its docs and dingtalk-stream's source:
``async with FakeDingTalk() as fake:``.

Four origins on 127.0.0.1, each on its own port, because the adapter must keep them apart:
- ``api_url`` (api.dingtalk.com): ``/v1.0/oauth2/accessToken``, the robot's OpenAPI sends
  (``oToMessages/batchSend``, ``groupMessages/send``), ``messageFiles/download``, card instances
  and ``/v1.0/card/streaming`` (``dingtalk_cards``), the Stream gateway (``dingtalk_gateway``);
- ``oapi_url`` (oapi.dingtalk.com): session webhooks (``/robot/sendBySession``) and
  ``/media/upload``;
- ``files_url``: the temporary download links ``messageFiles/download`` hands out;
- ``foreign_url``: a trap for requests that must never leave (a forged ``sessionWebhook``).

Every request is recorded (``calls``); what a person would see is in ``messages(space)`` and
``cards``; tokens expire (``expire_tokens``), the per-app QPS limit answers DingTalk's 403, and
``fail_next`` / ``throttle_next`` / ``hang_next`` / ``drop_next`` script failures. Where the docs
name no error code for a refusal, the fake uses its own code in the documented error shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.dingtalk_cards import CardStore, CardTemplate
from tests.fakes.dingtalk_gateway import StreamGateway
from tests.fakes.dingtalk_robot import RobotOpenAPI
from tests.fakes.dingtalk_session import SessionWebhooks
from tests.fakes.dingtalk_wire import (
    DingTalkCall,
    Scripted,
    Tokens,
    Windows,
    json_response,
    openapi_error,
    recorded_headers,
    throttled,
)

CLIENT_ID = "dingbotkey0123456789"  # AppKey; also the robot's robotCode
CLIENT_SECRET = "dingtalk-test-secret-0123456789abcdefghijklmnopqrstuv"
TEMPLATE_ID = "difybot-answer-0001.schema"
Handler = Callable[[DingTalkCall, web.Request], Awaitable[web.Response]]


class FakeDingTalk:
    """DingTalk for one app (AppKey = robotCode) in one organisation."""

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        corp_id: str = "dingcorp0123456789",
        clock: Callable[[], float] = time.time,
        qps: int | None = 20,  # per app per API per second: the standard edition's limit
    ) -> None:
        self.client_id, self.client_secret, self.corp_id = client_id, client_secret, corp_id
        self.app_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, client_id))  # unified app id
        self.clock = clock
        self.qps = qps
        self.qps_by_path: dict[str, int | None] = {}  # overrides ``qps`` for one path
        self.calls: list[DingTalkCall] = []
        self.tokens = Tokens(clock)
        self.cards = CardStore(client_id, self.notify, self.next_id)
        self.cards.add_template(CardTemplate(TEMPLATE_ID))
        self.gateway = StreamGateway(self)
        self.robot = RobotOpenAPI(self)
        self.sessions = SessionWebhooks(self)
        self.api_url = self.oapi_url = self.files_url = self.foreign_url = ""
        self.limited: list[DingTalkCall] = []  # refused by the QPS limit (not scripted)
        self._windows = Windows(clock)
        self._scripts: defaultdict[str, deque[Scripted]] = defaultdict(deque)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._release = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._ids = itertools.count(1)

    # ---- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDingTalk:
        self._release = asyncio.Event()
        self.api_url = await self._serve(self._api_app())
        oapi = web.Application()
        oapi.router.add_post("/robot/sendBySession", self._on("oapi", self.sessions.send))
        oapi.router.add_post("/media/upload", self._on("oapi", self.robot.upload, body=False))
        self.oapi_url = await self._serve(oapi)
        files = web.Application()
        files.router.add_get("/file/{key}", self.robot.download)
        self.files_url = await self._serve(files)
        foreign = web.Application()
        foreign.router.add_route("*", "/{tail:.*}", self._on("foreign", self._foreign))
        self.foreign_url = await self._serve(foreign)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._release.set()  # hung requests answer now, so the runners can stop
        await self.gateway.close()
        for runner in reversed(self._runners):
            await runner.cleanup()

    def _api_app(self) -> web.Application:
        app = web.Application()
        routes: list[tuple[str, str, Handler, bool]] = [
            ("POST", "/v1.0/oauth2/accessToken", self._access_token, False),
            ("POST", "/v1.0/gateway/connections/open", self._connections_open, False),
            ("POST", "/v1.0/robot/oToMessages/batchSend", self.robot.batch_send, True),
            ("POST", "/v1.0/robot/groupMessages/send", self.robot.group_send, True),
            ("POST", "/v1.0/robot/messageFiles/download", self.robot.file_url, True),
            ("POST", "/v1.0/card/instances", self._json(self.cards.create), True),
            ("PUT", "/v1.0/card/instances", self._json(self.cards.update), True),
            ("POST", "/v1.0/card/instances/deliver", self._json(self.cards.deliver), True),
            ("POST", "/v1.0/card/instances/createAndDeliver",
             self._json(self.cards.create_and_deliver), True),
            ("PUT", "/v1.0/card/streaming", self._json(self.cards.stream), True),
        ]  # fmt: skip
        for method, path, handler, auth in routes:
            app.router.add_route(method, path, self._on("api", handler, auth=auth))
        app.router.add_get("/connect", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._on("api", self._not_found))
        return app

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    # ---- what tests use -------------------------------------------------------------------

    def calls_to(self, path: str, *, origin: str | None = None) -> list[DingTalkCall]:
        return [c for c in self.calls if c.path == path and origin in (None, c.origin)]

    @property
    def foreign_calls(self) -> list[DingTalkCall]:
        return [c for c in self.calls if c.origin == "foreign"]

    def messages(self, space: str) -> list[dict[str, Any]]:
        """What a person sees in a chat (``IM_GROUP.<openConversationId>`` or
        ``IM_ROBOT.<staffId>``), oldest first: robot messages and the cards as they are now."""
        items = [m for m in self.robot.posted + self.sessions.posted if m["space"] == space]
        items += [{"space": space, "via": "card", "at": card.created_at, "card": card}
                  for card in self.cards.in_space(space)]  # fmt: skip
        return sorted(items, key=lambda m: m["at"])

    def fail_next(
        self, path: str, *, status: int = 500, code: str = "ServiceUnavailable",
        message: str = "服务暂时不可用", times: int = 1,
    ) -> None:  # fmt: skip
        body = {"code": code, "message": message, "requestid": str(uuid.uuid4()).upper()}
        self._scripts[path].extend(Scripted(status, body) for _ in range(times))

    def throttle_next(self, path: str, *, times: int = 1, global_limit: bool = False) -> None:
        response = throttled(global_limit=global_limit)
        body = json.loads(response.text or "{}")
        self._scripts[path].extend(Scripted(403, body) for _ in range(times))

    def fail_session_next(self, errcode: int, errmsg: str, *, times: int = 1) -> None:
        """The session webhook answers HTTP 200 with ``{"errcode": ..., "errmsg": ...}``."""
        body = {"errcode": errcode, "errmsg": errmsg}
        self._scripts["/robot/sendBySession"].extend(Scripted(200, body) for _ in range(times))

    def hang_next(self, path: str, *, times: int = 1) -> None:
        self._scripts[path].extend(Scripted(hang=True) for _ in range(times))

    def drop_next(self, path: str, *, times: int = 1) -> None:
        self._scripts[path].extend(Scripted(drop=True) for _ in range(times))

    def expire_tokens(self) -> None:
        self.tokens.expire_all()

    async def wait_for(
        self,
        path: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
        *,
        origin: str | None = None,
    ) -> list[DingTalkCall]:
        def answered() -> list[DingTalkCall]:
            return [c for c in self.calls_to(path, origin=origin) if c.status]

        await self.until(lambda: len(answered()) >= count, timeout, f"{count}x {path}")
        return answered()

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
            raise TimeoutError(f"FakeDingTalk: no {what or 'condition'} in {timeout} s") from None
        finally:
            self._waiters.remove(entry)

    def notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    def next_id(self) -> int:
        return next(self._ids)

    # ---- the request pipeline ---------------------------------------------------------------

    def _on(
        self, origin: str, handler: Handler, *, auth: bool = False, body: bool = True
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                raw = await request.read() if body else b""
            except ConnectionResetError:  # the client died mid-body (a killed replica)
                raise web.HTTPBadRequest() from None
            call = DingTalkCall(origin, request.method, request.path, dict(request.query),
                                recorded_headers(request), raw, _parse(raw))  # fmt: skip
            self.calls.append(call)
            try:
                response = await self._answer(call, request, handler, auth=auth)
            except ConnectionResetError:
                self.notify()
                raise
            call.status = response.status
            call.answer = _parse(response.body) if isinstance(response.body, bytes) else None
            self.notify()
            return response

        return route

    async def _answer(
        self, call: DingTalkCall, request: web.Request, handler: Handler, *, auth: bool
    ) -> web.Response:
        scripted = self._scripts[call.path].popleft() if self._scripts[call.path] else None
        if scripted is not None:
            return await self._scripted(scripted, request)
        if auth:
            token = call.headers.get("x-acs-dingtalk-access-token", "")
            if not token:
                return openapi_error(400, "AuthenticationFailed.MissingParameter",
                                     "缺少参数：x-acs-dingtalk-access-token")  # fmt: skip
            if not self.tokens.is_valid(token):
                return openapi_error(400, "InvalidAuthentication", "不合法的access_token")
        limit = self.qps_by_path.get(call.path, self.qps)
        if call.origin == "api" and not self._windows.allow(f"qps:{call.path}", limit, 1.0):
            self.limited.append(call)
            return throttled()
        return await handler(call, request)

    async def _scripted(self, scripted: Scripted, request: web.Request) -> web.Response:
        if scripted.hang:
            await self._release.wait()
            return openapi_error(504, "GatewayTimeout", "调用网关超时")
        if scripted.drop:
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("FakeDingTalk dropped the connection")
        return json_response(scripted.body, status=scripted.status)

    def _json(self, handler: Callable[[dict[str, Any]], web.Response]) -> Handler:
        async def handle(call: DingTalkCall, request: web.Request) -> web.Response:
            if not isinstance(call.json, dict):
                return openapi_error(400, "InvalidParameter.Body", "请求体必须是 JSON 对象")
            return handler(call.json)

        return handle

    # ---- routes that need nothing else --------------------------------------------------------

    async def _access_token(self, call: DingTalkCall, request: web.Request) -> web.Response:
        body = call.json if isinstance(call.json, dict) else {}
        if (body.get("appKey"), body.get("appSecret")) != (self.client_id, self.client_secret):
            return openapi_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = self.tokens.issue()
        return json_response({"accessToken": token, "expireIn": self.tokens.lifetime})

    async def _connections_open(self, call: DingTalkCall, request: web.Request) -> web.Response:
        return self.gateway.open(call.json if isinstance(call.json, dict) else {})

    async def _not_found(self, call: DingTalkCall, request: web.Request) -> web.Response:
        return openapi_error(404, "InvalidAction.NotFound", f"{call.path} 不存在")

    async def _foreign(self, call: DingTalkCall, request: web.Request) -> web.Response:
        return json_response({"errcode": 0, "errmsg": "ok"})


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def group_space(open_conversation_id: str) -> str:
    return f"IM_GROUP.{open_conversation_id}"


def robot_space(staff_id: str) -> str:
    return f"IM_ROBOT.{staff_id}"

"""A loopback aiohttp fake of the WeChat and WeCom server APIs that records every call.

Tokens behave like the real ones: ``stable_token`` and WeCom ``gettoken`` return the same token
until it is invalidated (``invalidate_tokens``, or ``force_refresh``); a call with a token that is
not current gets 40001 (WeChat) / 42001 (WeCom). ``fail_next(path, errcode)`` scripts errors.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    json: Any = None
    ok: bool = False  # the fake accepted it (errcode 0)


@dataclass
class Media:
    data: bytes
    content_type: str


@dataclass
class FakeWeChatAPI:
    """WeChat (api.weixin.qq.com) and WeCom (qyapi.weixin.qq.com) on 127.0.0.1:<random port>."""

    app_id: str = "wx0123456789abcdef"
    app_secret: str = "oa-secret"
    corp_id: str = "ww0123456789abcdef"
    corp_secret: str = "corp-secret"
    media: dict[str, Media] = field(default_factory=dict)
    uploaded: dict[str, Media] = field(default_factory=dict)  # media/upload, by media_id
    # Tencent's file storage (the AI bot's encrypted media; COS in production), served from the
    # configured API base here: the one loopback origin difybot fetches pushed URLs from.
    cdn: dict[str, bytes] = field(default_factory=dict)
    media_sent: dict[str, int] = field(default_factory=dict)  # bytes media/get wrote, by id
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    tokens_issued: int = 0
    _current: dict[str, str] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)
    _scripts: defaultdict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    _waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def __aenter__(self) -> FakeWeChatAPI:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self._stable_token)
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_post("/cgi-bin/media/upload", self._media_upload)
        for path in (
            "/cgi-bin/message/custom/send",
            "/cgi-bin/message/custom/typing",
            "/cgi-bin/message/send",
            "/cgi-bin/message/update_template_card",
        ):
            app.router.add_post(path, self._authorized)
        app.router.add_post("/cgi-bin/aibot/response", self._aibot_response)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- what tests use ---------------------------------------------------------------------

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def sent_texts(self, path: str = "/cgi-bin/message/custom/send") -> list[str]:
        """Text contents that were accepted (errcode 0) on a send path."""
        return [c.json[c.json["msgtype"]]["content"] for c in self.calls_to(path) if c.ok]

    def fail_next(self, path: str, *errcodes: int) -> None:
        self._scripts[path].extend(errcodes)

    def invalidate_tokens(self) -> None:
        """As if the tokens were reset elsewhere: the next call with the old one gets 40001."""
        self._current.clear()

    def revoke_current(self) -> None:
        """The current tokens stop working, yet a normal stable_token call still returns them
        (as when a token leaks and is revoked): only ``force_refresh`` gets a working one."""
        self._revoked.update(self._current.values())

    async def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Call]:  # noqa: ASYNC109
        def ready() -> bool:
            return len(self.calls_to(path)) >= count

        if not ready():
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((ready, future))
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                raise TimeoutError(
                    f"FakeWeChatAPI: no {count}x {path} within {timeout} s"
                ) from None
        return self.calls_to(path)

    # ---- routes -------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Call:
        body = await request.read()
        parsed = json.loads(body) if body and request.content_type == "application/json" else None
        call = Call(request.method, request.path, dict(request.query), body, parsed)
        self.calls.append(call)
        return call

    def _notify(self) -> None:
        for ready, future in self._waiters:
            if not future.done() and ready():
                future.set_result(None)

    def _reply(
        self, body: dict[str, Any], *, content_type: str = "application/json"
    ) -> web.Response:
        self._notify()
        return web.Response(text=json.dumps(body, ensure_ascii=False), content_type=content_type)

    def _issue(self, kind: str, *, force: bool = False) -> str:
        if force or kind not in self._current:
            self.tokens_issued += 1
            self._current[kind] = f"{kind}-token-{self.tokens_issued}"
        return self._current[kind]

    async def _stable_token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.json or {}
        if body.get("appid") != self.app_id or body.get("secret") != self.app_secret:
            return self._reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = self._issue("wechat", force=bool(body.get("force_refresh")))
        return self._reply({"access_token": token, "expires_in": 7200})

    async def _gettoken(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if (
            call.query.get("corpid") != self.corp_id
            or call.query.get("corpsecret") != self.corp_secret
        ):
            return self._reply({"errcode": 40091, "errmsg": "secret is invalid"})
        token = self._issue("wecom")
        return self._reply(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    def _token_error(self, call: Call) -> dict[str, Any] | None:
        token = call.query.get("access_token", "")
        if not token:
            return {"errcode": 41001, "errmsg": "access_token missing"}
        if token not in self._current.values() or token in self._revoked:
            wecom = token.startswith("wecom")
            return {"errcode": 42001 if wecom else 40001, "errmsg": "invalid credential"}
        scripted = self._scripts[call.path]
        if scripted:
            return {"errcode": scripted.popleft(), "errmsg": "scripted failure"}
        return None

    async def _authorized(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        error = self._token_error(call)
        if error is not None:
            return self._reply(error)
        call.ok = True
        extra = (
            {"invaliduser": "", "msgid": f"msg{next(self._ids)}"}
            if "custom" not in call.path
            else {}
        )
        return self._reply({"errcode": 0, "errmsg": "ok", **extra})

    async def _media_get(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        error = self._token_error(call)
        media = self.media.get(call.query.get("media_id", ""))
        if error is None and media is None:
            error = {"errcode": 40007, "errmsg": "invalid media_id"}
        if error is not None:  # WeChat sends these as text/plain
            return self._reply(error, content_type="text/plain")
        self._notify()
        assert media is not None
        # Streamed without a length, 64 KiB at a time, counting what got out before the
        # client hung up (tests prove an oversized file is refused before it is all read).
        response = web.StreamResponse(headers={"Content-Type": media.content_type})
        await response.prepare(request)
        media_id = call.query["media_id"]
        self.media_sent[media_id] = 0
        try:
            for start in range(0, len(media.data), 65536):
                await response.write(media.data[start : start + 65536])
                self.media_sent[media_id] += len(media.data[start : start + 65536])
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def _cdn(self, request: web.Request) -> web.Response:
        await self._record(request)
        data = self.cdn.get(request.match_info["name"])
        self._notify()
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _media_upload(self, request: web.Request) -> web.Response:
        call = Call(request.method, request.path, dict(request.query), b"")
        self.calls.append(call)
        error = self._token_error(call)
        if error is not None:
            return self._reply(error)
        post = await request.post()
        part = post.get("media")
        if not isinstance(part, web.FileField):
            return self._reply({"errcode": 41005, "errmsg": "media data missing"})
        media_id = f"up-{next(self._ids)}"
        self.uploaded[media_id] = Media(part.file.read(), part.content_type)
        call.ok = True
        kind = call.query.get("type", "")
        return self._reply({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                            "created_at": 1700000000})  # fmt: skip

    async def _aibot_response(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        code = call.query.get("response_code", "")
        used = [c for c in self.calls_to(request.path)[:-1] if c.query.get("response_code") == code]
        if used:
            return self._reply({"errcode": 40072, "errmsg": "response_code already used"})
        call.ok = True
        return self._reply({"errcode": 0, "errmsg": "ok"})

"""Wire-level pieces of the fake DingTalk: recorded calls, scripted failures, error bodies,
token issuance and the per-app QPS windows, shared by the fake's route modules.

Two response styles exist on DingTalk's wire and the fake keeps both:
- the new OpenAPI (api.dingtalk.com, ``/v1.0/...``) answers errors with a 4xx/5xx status and
  ``{"code": "...", "message": "...", "requestid": "..."}``;
- the old API (oapi.dingtalk.com: ``sendBySession``, ``media/upload``) answers HTTP 200 with
  ``{"errcode": N, "errmsg": "..."}``.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN_LIFETIME = 7200  # seconds: accessToken's expireIn
# The headers a test may want to assert on (never the secret-bearing body of accessToken).
RECORDED_HEADERS = ("x-acs-dingtalk-access-token", "content-type", "user-agent", "authorization")


@dataclass
class DingTalkCall:
    """One request the fake received, on one of its origins."""

    origin: str  # "api" | "oapi" | "files" | "foreign"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    status: int = 0  # what the fake answered (0: no answer yet, or the connection was dropped)
    answer: Any = None  # the JSON body it answered

    @property
    def ok(self) -> bool:
        if self.status != 200:
            return False
        errcode = self.answer.get("errcode", 0) if isinstance(self.answer, dict) else 0
        return bool(errcode == 0)


@dataclass
class Scripted:
    """A failure queued for the next call(s) to a path."""

    status: int = 500
    body: dict[str, Any] | None = None
    hang: bool = False  # never answer (until the fake closes): the client's timeout must fire
    drop: bool = False  # close the connection without an answer


def openapi_error(status: int, code: str, message: str) -> web.Response:
    body = {"code": code, "message": message, "requestid": str(uuid.uuid4()).upper()}
    return json_response(body, status=status)


def oapi_error(errcode: int, errmsg: str) -> web.Response:
    """The old API always answers 200; the error is in the body."""
    return json_response({"errcode": errcode, "errmsg": errmsg})


def json_response(body: Any, *, status: int = 200) -> web.Response:
    headers = {"x-acs-request-id": str(uuid.uuid4()).upper()}
    text = json.dumps(body, ensure_ascii=False)
    return web.Response(
        text=text, status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def throttled(*, global_limit: bool = False) -> web.Response:
    """DingTalk's QPS refusal: HTTP 403, no Retry-After; the window is one second."""
    if global_limit:  # every app together over this API's global ceiling
        code = "Forbidden.AccessDenied.QpsLimitForApi"
        message = "当前接口调用频率超过全局限流阈值，请稍后重试"
    else:  # this app over its own per-API limit (20/s on the standard edition)
        code = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
        message = "当前应用调用该接口的频率超过限流阈值，请稍后重试"
    return openapi_error(403, code, message)


class Windows:
    """Rolling windows of accepted calls per key: ``allow(key, limit, span)``. A refused call
    does not count, as on DingTalk."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._calls: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, limit: int | None, span: float) -> bool:
        if limit is None:
            return True
        now = self._clock()
        window = self._calls[key]
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True


@dataclass
class Tokens:
    """App access tokens: 7200 s; asking again while one is valid returns the same token and
    renews it (DingTalk: "有效期内重复获取会返回相同结果并自动续期")."""

    clock: Callable[[], float]
    lifetime: int = TOKEN_LIFETIME
    issued: int = 0
    _expiry: dict[str, float] = field(default_factory=dict)
    _current: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def issue(self) -> str:
        now = self.clock()
        if not self._current or self._expiry.get(self._current, 0) <= now:
            self.issued += 1
            self._current = f"dt-token-{next(self._ids)}-{uuid.uuid4().hex[:12]}"
        self._expiry[self._current] = now + self.lifetime
        return self._current

    def is_valid(self, token: str) -> bool:
        return self._expiry.get(token, 0) > self.clock()

    def expire_all(self) -> None:
        """As if every token's 7200 s had passed."""
        for token in self._expiry:
            self._expiry[token] = 0
        self._current = ""


def recorded_headers(request: web.Request) -> dict[str, str]:
    return {name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers}

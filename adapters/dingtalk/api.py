"""DingTalk's server APIs over httpx: the access token (shared by replicas), OpenAPI calls, and
posts to a callback's session webhook, every rate-limited call paced by ``DingTalkPacer``.

Two answer styles (docs "错误码"): the new OpenAPI (``DINGTALK_API_BASE``, ``/v1.0/...``) answers
errors with a 4xx/5xx status and ``{"code", "message", "requestid"}``; the old API
(``DINGTALK_OAPI_BASE``: session webhooks) answers HTTP 200 and ``{"errcode", "errmsg"}``. Both
become ``DingTalkAPIError``. The QPS refusal is HTTP 403 with a ``Forbidden.AccessDenied.Qps*``
code and no Retry-After (the window is one second); a session webhook past its 20 messages a
minute answers errcode 410100.

Secrets stay here: the app secret goes only to ``/v1.0/oauth2/accessToken`` on the API base, the
token only in the ``x-acs-dingtalk-access-token`` header to that base, and nothing is ever posted
to a session webhook whose origin is not ``DINGTALK_OAPI_BASE``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson

from bot.errors import PlatformAPIError
from bot.ops.metrics import Metrics
from bot.stores import StoredToken, TokenStore

log = logging.getLogger(__name__)

T = TypeVar("T")
_JSON = {"Content-Type": "application/json; charset=utf-8"}
TOKEN_CODES = frozenset({"InvalidAuthentication", "AuthenticationFailed.MissingParameter"})
SESSION_GONE = 300001  # "session 不存在": the session webhook expired
SESSION_TOO_FAST = 410100  # more than 20 messages a minute through one robot
TOO_LONG = 460101  # "message too long, exceed 20000 bytes"


class DingTalkAPIError(PlatformAPIError):
    """A DingTalk call failed: ``code`` is the OpenAPI code or the old API's errcode as text."""

    @property
    def throttled(self) -> bool:
        """Refused for going too fast: DingTalk's 403 QPS codes, a session webhook's 410100, or
        a 429 (from a proxy in between; its Retry-After is kept)."""
        qps = self.code.startswith("Forbidden.AccessDenied.Qps")
        return qps or self.code == str(SESSION_TOO_FAST) or self.status == 429

    @property
    def is_token_error(self) -> bool:
        return self.code in TOKEN_CODES

    @property
    def session_gone(self) -> bool:
        return self.code == str(SESSION_GONE)


class ForeignWebhook(PlatformAPIError):
    """A session webhook outside ``DINGTALK_OAPI_BASE``: never called."""


class DingTalkPacer:
    """Every rate-limited DingTalk call goes through ``call``: a refusal for going too fast pauses
    that API for its ``retry_after`` (DingTalk's window: one second) and the call is tried again,
    up to ``tries`` times. One object per app, so it can be swapped for a shared scheduler."""

    def __init__(
        self,
        *,
        tries: int = 4,
        pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._tries = tries
        self._pause = pause
        self._clock = clock
        self._sleep = sleep
        self._until: dict[str, float] = {}

    async def call(self, key: str, send: Callable[[], Awaitable[T]], *, tries: int = 0) -> T:
        """``send()``, again after a pause while DingTalk refuses it as too fast; ``tries``
        overrides how many times (1: the caller has another way when refused)."""
        tries = tries or self._tries
        for attempt in range(1, tries + 1):
            wait = self._until.get(key, 0.0) - self._clock()
            if wait > 0:
                await self._sleep(wait)
            try:
                return await send()
            except DingTalkAPIError as exc:
                if not exc.throttled or attempt == tries:
                    raise
                pause = exc.retry_after or self._pause
                self._until[key] = max(self._until.get(key, 0.0), self._clock() + pause)
                log.info("DingTalk %s throttled (%s); again in %.1f s", key, exc.code, pause)
        raise AssertionError("unreachable")


class DingTalkTokens:
    """The app's access token: this process's copy, then the shared store, then DingTalk (one
    request at a time). DingTalk hands back the same token while it is valid, so replicas never
    invalidate each other; ``margin`` seconds before expiry a token counts as expired."""

    def __init__(
        self,
        store: TokenStore,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        *,
        name: str,
        clock: Callable[[], float] = time.time,
        margin: float = 300.0,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._name = name
        self._clock = clock
        self._margin = margin
        self._cached: StoredToken | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, rejected: str = "") -> str:
        if self._usable(self._cached, rejected):
            assert self._cached is not None
            return self._cached.token
        async with self._lock:
            for candidate in (self._cached, await self._store.get(self._name)):
                if self._usable(candidate, rejected):
                    assert candidate is not None
                    self._cached = candidate
                    return candidate.token
            token, expires_in = await self._fetch()
            self._cached = StoredToken(token, self._clock() + expires_in)
            await self._store.put(self._name, token, expires_at=self._cached.expires_at)
            return token

    def _usable(self, token: StoredToken | None, rejected: str) -> bool:
        return (
            token is not None
            and token.token != rejected
            and token.expires_at - self._margin > self._clock()
        )


class DingTalkAPI:
    """The calls difybot makes to DingTalk, for one app."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        api_base: str,
        oapi_base: str,
        tokens: TokenStore,
        pacer: DingTalkPacer | None = None,
    ) -> None:
        self.http = http
        self.client_id = client_id
        self._secret = client_secret
        self.api_base = api_base.rstrip("/")
        self.oapi_origin = httpx.URL(oapi_base).copy_with(path="/", query=None)
        self.pacer = pacer or DingTalkPacer()
        self.tokens = DingTalkTokens(tokens, self._fetch_token, name=f"dingtalk:{client_id}")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _fetch_token(self) -> tuple[str, float]:
        body = {"appKey": self.client_id, "appSecret": self._secret}
        answer = await self._send("POST", f"{self.api_base}/v1.0/oauth2/accessToken", body, {})
        token, expires_in = answer.get("accessToken"), answer.get("expireIn")
        if not isinstance(token, str) or not isinstance(expires_in, int | float):
            raise DingTalkAPIError("accessToken answer without a token", code="bad_answer")
        return token, float(expires_in)

    async def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAPI call with the app's token (renewed once if DingTalk refuses it), paced."""

        async def send() -> dict[str, Any]:
            token = await self.tokens.get()
            url = f"{self.api_base}{path}"
            try:
                return await self._send(method, url, body, self._auth(token))
            except DingTalkAPIError as exc:
                if not exc.is_token_error:
                    raise
                fresh = await self.tokens.get(rejected=token)
                return await self._send(method, url, body, self._auth(fresh))

        return await self.pacer.call(path, send)

    @staticmethod
    def _auth(token: str) -> dict[str, str]:
        return {"x-acs-dingtalk-access-token": token}

    def is_session_webhook(self, url: str) -> bool:
        """True only for an https/http URL on ``DINGTALK_OAPI_BASE``'s own origin."""
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            return False
        origin = self.oapi_origin
        return (target.scheme, target.host, target.port) == (
            origin.scheme,
            origin.host,
            origin.port,
        )

    async def send_session(self, url: str, body: dict[str, Any]) -> None:
        """A message through a callback's session webhook (no token needed: the URL is one)."""
        if not self.is_session_webhook(url):
            raise ForeignWebhook("session webhook outside DINGTALK_OAPI_BASE", code="foreign")
        # Over 20 a minute DingTalk refuses: no retry, the caller uses the OpenAPI send instead.
        await self.pacer.call("sendBySession", lambda: self._send("POST", url, body, {}), tries=1)

    async def _send(
        self, method: str, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        try:
            response = await self.http.request(
                method, url, content=orjson.dumps(body), headers={**_JSON, **headers}
            )
        except httpx.HTTPError as exc:
            path = httpx.URL(url).path
            raise DingTalkAPIError(f"{path}: {exc!r}", code="unreachable") from exc
        return to_result(response)


def to_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON answer, or ``DingTalkAPIError`` in either of DingTalk's two error styles."""
    path = response.request.url.path
    try:
        answer = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise DingTalkAPIError(
            f"{path}: HTTP {response.status_code}, not JSON", status=response.status_code
        )
    if not response.is_success:
        code = str(answer.get("code") or response.status_code)
        message = f"{path}: HTTP {response.status_code} {code} {answer.get('message', '')}"
        retry_after = response.headers.get("retry-after", "")
        wait = float(retry_after) if retry_after.isdigit() else None
        raise DingTalkAPIError(message, status=response.status_code, code=code, retry_after=wait)
    errcode = answer.get("errcode", 0)
    if errcode not in (0, "0", None):
        message = f"{path}: errcode {errcode} {answer.get('errmsg', '')}"
        raise DingTalkAPIError(message, status=response.status_code, code=str(errcode))
    return answer


def build_http(metrics: Metrics, *, timeout: float, platform: str) -> httpx.AsyncClient:
    """One client for every DingTalk origin, each call with explicit timeouts and counted."""

    async def on_response(response: httpx.Response) -> None:
        limited = response.status_code in (403, 429)
        metrics.platform_call(platform, response.request.url.path, limited=limited)

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        event_hooks={"response": [on_response]},
    )

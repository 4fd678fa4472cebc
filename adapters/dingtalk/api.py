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
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import orjson

from adapters.metering import meter
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Limit, Priority, Scheduler
from bot.errors import PlatformAPIError
from bot.ops.metrics import Metrics
from bot.stores import Budgets, StoredToken, TokenStore

log = logging.getLogger(__name__)

T = TypeVar("T")
_JSON = {"Content-Type": "application/json; charset=utf-8"}
TOKEN_CODES = frozenset({"InvalidAuthentication", "AuthenticationFailed.MissingParameter"})
SESSION_GONE = 300001  # "session 不存在": the session webhook expired
SESSION_TOO_FAST = 410100  # more than 20 messages a minute through one robot
TOO_LONG = 460101  # "message too long, exceed 20000 bytes"
PLATFORM = "dingtalk"


class DingTalkAPIError(PlatformAPIError):
    """A DingTalk call failed: ``code`` is the OpenAPI code or the old API's errcode as text."""

    @property
    def throttled(self) -> bool:
        """Refused for going too fast: DingTalk's 403 QPS codes, a session webhook's 410100, or
        a 429 (from a proxy in between; its Retry-After is kept)."""
        qps = self.code.startswith("Forbidden.AccessDenied.Qps")
        ours = self.code == "throttled"  # no slot now in the shared budget (``DingTalkPacer``)
        return qps or ours or self.code == str(SESSION_TOO_FAST) or self.status == 429

    @property
    def is_token_error(self) -> bool:
        return self.code in TOKEN_CODES

    @property
    def session_gone(self) -> bool:
        return self.code == str(SESSION_GONE)


class ForeignWebhook(PlatformAPIError):
    """A session webhook outside ``DINGTALK_OAPI_BASE``: never called."""


# Per app and API, 20 calls a second (the standard edition's QPS limit, docs "API 调用频率限制"),
# 90 % of it; a session webhook 20 messages a minute (the robot limit; per session, as DingTalk's
# 410100 answers it), 90 % of it. Every replica of the app draws on the same buckets: the
# scheduler's account is the app (client id). The stream gateway's ``connections/open`` is not
# an OpenAPI call: only its refusals are waited out.
QPS = 18
SESSION_PER_MINUTE = 18
SESSION = "sendBySession"
PATHS = (
    "/v1.0/card/streaming",
    "/v1.0/card/instances",
    "/v1.0/card/instances/createAndDeliver",
    "/v1.0/robot/groupMessages/send",
    "/v1.0/robot/oToMessages/batchSend",
    "/v1.0/robot/messageFiles/download",
)


def dingtalk_limits() -> Mapping[str, tuple[Limit, ...]]:
    """The buckets of each API path (per app), and of session webhooks (per session)."""
    limits = {path: (Limit.per_window(QPS, 1.0),) for path in PATHS}
    limits[SESSION] = (Limit.per_minute(SESSION_PER_MINUTE, per_channel=True),)
    return limits


class Skipped(Exception):
    """An interim call found no slot now: it is not made (a later one, or the final, follows)."""


class DingTalkPacer:
    """Every rate-limited DingTalk call goes through ``call``, on the shared delivery scheduler:
    it waits for the API's slot (finals first; an interim call goes now or never: ``Skipped``);
    a refusal for going too fast pauses that API on every replica for its ``retry_after``
    (DingTalk's window: one second) and the call is tried again, up to ``tries`` times."""

    def __init__(
        self,
        *,
        budgets: Budgets | None = None,
        app: str = "app",
        metrics: Metrics | None = None,
        tries: int = 4,
        pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._tries = tries
        self._pause = pause
        self._sleep = sleep
        self.scheduler = Scheduler(
            PLATFORM,
            budgets if budgets is not None else MemoryBudgets(clock=clock),
            dingtalk_limits(),
            metrics=metrics,
            clock=clock,
            sleep=sleep,
        )
        self._account = self.scheduler.account(app)

    async def call(
        self,
        key: str,
        send: Callable[[], Awaitable[T]],
        *,
        tries: int = 0,
        channel: str = "",
        priority: Priority = Priority.FINAL,
    ) -> T:
        """``send()``, again after a pause while DingTalk refuses it as too fast; ``tries``
        overrides how many times (1: the caller has another way when refused, so a call with
        no slot now is refused here at once, as DingTalk would)."""
        tries = tries or self._tries
        account = self._account
        for attempt in range(1, tries + 1):
            if priority is Priority.INTERIM:
                if not await account.now(key, priority=priority, channel=channel):
                    raise Skipped(key)
            elif not await account.slot(
                key, priority=priority, channel=channel, within=0.0 if tries == 1 else None
            ):
                raise DingTalkAPIError(f"{key}: no slot now", code="throttled")
            try:
                return await send()
            except DingTalkAPIError as exc:
                if not exc.throttled or attempt == tries:
                    raise  # (a session's one refusal: the next message may go through it)
                pause = exc.retry_after or self._pause
                if key in self.scheduler.limits:
                    await account.block(key, pause, channel=channel)
                else:  # no bucket (the stream gateway's connections/open): wait here
                    await self._sleep(pause)
                log.info("DingTalk %s throttled (%s); again in %.1f s", key, exc.code, pause)
                if priority is Priority.INTERIM:
                    raise Skipped(key) from None  # a later update (or the final) follows
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

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        priority: Priority = Priority.FINAL,
    ) -> dict[str, Any]:
        """An OpenAPI call with the app's token (renewed once if DingTalk refuses it), paced.
        An ``INTERIM`` call with no slot now is not made: ``{}``."""

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

        try:
            return await self.pacer.call(path, send, priority=priority)
        except Skipped:
            return {}

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
        # Counted per session; the URL carries a credential, so its hash names the bucket.
        session = hashlib.sha256(url.encode()).hexdigest()[:24]
        send = lambda: self._send("POST", url, body, {})  # noqa: E731
        await self.pacer.call(SESSION, send, tries=1, channel=session)

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
    """One client for every DingTalk origin, each call with explicit timeouts and counted
    (DingTalk refuses over its QPS with 403 ``Forbidden.AccessDenied.Qps…``, sometimes 429)."""
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    return meter(http, metrics, platform, limited=_is_throttled)


async def _is_throttled(response: httpx.Response) -> bool:
    return response.status_code in (403, 429)

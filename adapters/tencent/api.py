"""The WeChat and WeCom server APIs over httpx: tokens shared in the store, one retry on 40001.

WeChat answers errors as HTTP 200 with ``{"errcode": n, "errmsg": ...}``; every call is checked
and turned into ``WeChatAPIError``. A token the platform calls invalid or expired (40001, 40014,
42001) is refreshed once and the call retried once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from adapters.tencent.errors import WeChatAPIError
from bot.errors import FileUnavailable
from bot.files.downloads import Download, body_of, check_size, content_type
from bot.stores import StoredToken, TokenStore

log = logging.getLogger(__name__)

MAX_MEDIA = 20 * 1024 * 1024
T = TypeVar("T")
_JSON = {"Content-Type": "application/json; charset=utf-8"}


class Fetch(Protocol):
    """Gets a token from the platform: ``(token, expires_in seconds)``."""

    def __call__(self, *, force: bool) -> Awaitable[tuple[str, float]]: ...


def build_http(base_url: str, *, timeout: float = 10.0) -> httpx.AsyncClient:
    """One client per API host, with explicit timeouts (WeChat answers in well under a second)."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=limits,
        verify=tls_context(),
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~40 ms; the three WeChat surfaces share one context."""
    return httpx.create_ssl_context()


class AccessTokens:
    """One platform token: local cache, then the shared store, then the platform (single flight).

    ``margin`` seconds before expiry a token counts as expired, so a call never carries a token
    that dies in flight. A forced refresh (stable_token ``force_refresh``) is rationed: WeChat
    allows 20 a day, 30 s apart, and only when the normal fetch returns the rejected token again.
    """

    def __init__(
        self,
        store: TokenStore,
        name: str,
        fetch: Fetch,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = 60.0,
    ) -> None:
        self._store = store
        self._name = name
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._cached: StoredToken | None = None
        self._lock = asyncio.Lock()
        self._last_force = float("-inf")

    async def get(self) -> str:
        if self._usable(self._cached, rejected=None):
            return self._cached.token  # type: ignore[union-attr]  # _usable checked it
        async with self._lock:
            return await self._current(rejected=None)

    async def refresh(self, rejected: str) -> str:
        """A token other than ``rejected``: another replica's, or a new one from the platform."""
        async with self._lock:
            return await self._current(rejected=rejected)

    async def _current(self, *, rejected: str | None) -> str:
        if self._usable(self._cached, rejected=rejected):
            return self._cached.token  # type: ignore[union-attr]
        stored = await self._store.get(self._name)
        if self._usable(stored, rejected=rejected):
            self._cached = stored
            return stored.token  # type: ignore[union-attr]
        token, expires_in = await self._fetch(force=False)
        if token == rejected and self._clock() - self._last_force >= 30:
            self._last_force = self._clock()
            log.warning("access token %s rejected but still current; forcing a new one", self._name)
            token, expires_in = await self._fetch(force=True)
        fresh = StoredToken(token=token, expires_at=self._clock() + expires_in)
        await self._store.put(self._name, token, expires_at=fresh.expires_at)
        self._cached = fresh
        return token

    def _usable(self, token: StoredToken | None, *, rejected: str | None) -> bool:
        return (
            token is not None
            and token.token != rejected
            and token.expires_at - self._margin > self._clock()
        )


class PlatformAPI:
    """Calls that carry ``access_token``: JSON posts and media downloads."""

    def __init__(self, http: httpx.AsyncClient, tokens: AccessTokens) -> None:
        self.http = http
        self.tokens = tokens

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        content = orjson.dumps(body)  # raw UTF-8: WeChat shows \uXXXX escapes literally

        async def send(token: str) -> dict[str, Any]:
            params = {"access_token": token}
            response = await self._request("POST", path, params=params, content=content)
            return to_result(response, response.content)

        return await self._with_token(send)

    async def download(self, path: str, params: dict[str, str]) -> tuple[bytes, str]:
        """A media file's bytes and MIME type (errors come back as small JSON bodies)."""

        async def send(token: str) -> tuple[bytes, str]:
            query = {**params, "access_token": token}
            try:
                async with self.http.stream("GET", path, params=query) as response:
                    data = await _read_bounded(response, MAX_MEDIA)
            except httpx.HTTPError as exc:
                raise WeChatAPIError(f"{path}: {type(exc).__name__}", errcode=-1) from exc
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            if kind in ("application/json", "text/plain") and len(data) < 4096:
                to_result(response, data)  # raises on errcode; errcode 0 here is no media either
                raise WeChatAPIError(f"{path}: no media in the response", errcode=-1)
            return data, kind or "application/octet-stream"

        return await self._with_token(send)

    @asynccontextmanager
    async def open_media(self, media_id: str, *, limit: int, name: str) -> AsyncIterator[Download]:
        """``/cgi-bin/media/get`` as a stream capped at ``limit`` (errors are small JSON bodies,
        sent as text/plain; a rejected token is refreshed once)."""
        token = await self.tokens.get()
        for attempt in range(2):
            query = {"media_id": media_id, "access_token": token}
            try:
                async with self.http.stream("GET", "/cgi-bin/media/get", params=query) as response:
                    kind = content_type(response)
                    if kind not in ("application/json", "text/plain"):
                        size = response.headers.get("content-length", "")
                        known = int(size) if size.isascii() and size.isdigit() else None
                        check_size(known, limit, name=name)
                        yield Download(name, kind, known, body_of(response, limit, name=name))
                        return
                    error = _media_error(response, await _read_bounded(response, 4096))
            except httpx.HTTPError as exc:
                raise FileUnavailable(f"media/get: {type(exc).__name__}", name=name) from exc
            if not (error.is_token_error and attempt == 0):
                raise FileUnavailable(f"media/get: {error}", name=name) from error
            token = await self.tokens.refresh(token)

    async def upload(self, kind: str, *, filename: str, data: bytes, mime_type: str) -> str:
        """``/cgi-bin/media/upload?type=kind`` (OA and WeCom alike): the temporary media id."""

        async def send(token: str) -> str:
            params = {"access_token": token, "type": kind}
            files = {"media": (filename, data, mime_type)}
            response = await self._request(
                "POST", "/cgi-bin/media/upload", params=params, files=files
            )
            return str(to_result(response, response.content).get("media_id") or "")

        return await self._with_token(send)

    async def _with_token(self, send: Callable[[str], Awaitable[T]]) -> T:
        token = await self.tokens.get()
        try:
            return await send(token)
        except WeChatAPIError as exc:
            if not exc.is_token_error:
                raise
            log.info("access token rejected (%s); refreshing once", exc.errcode)
        return await send(await self.tokens.refresh(token))

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = _JSON if "content" in kwargs else None
        try:
            response = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise WeChatAPIError(f"{path}: {type(exc).__name__}", errcode=-1) from exc
        return response


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The body, refusing one larger than ``limit`` before buffering it all."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise WeChatAPIError(
                f"{response.request.url.path}: body over {limit} bytes", errcode=-1
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _media_error(response: httpx.Response, content: bytes) -> WeChatAPIError:
    try:
        to_result(response, content)
    except WeChatAPIError as exc:
        return exc
    return WeChatAPIError("no media in the response", errcode=-1)


def to_result(response: httpx.Response, content: bytes) -> dict[str, Any]:
    """The JSON body if ``errcode`` is 0 (or absent); WeChatAPIError otherwise."""
    path = response.request.url.path
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise WeChatAPIError(
            f"{path}: HTTP {response.status_code}, not JSON",
            errcode=-1,
            status=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise WeChatAPIError(f"{path}: unexpected JSON", errcode=-1, status=response.status_code)
    errcode = int(body.get("errcode") or 0)
    if errcode != 0 or response.status_code >= 400:
        message = f"{path}: {errcode} {body.get('errmsg', '')}"
        raise WeChatAPIError(message, errcode=errcode or -1, status=response.status_code)
    return body


async def stable_token(
    http: httpx.AsyncClient, *, app_id: str, secret: str, force: bool
) -> tuple[str, float]:
    """Official Account token by ``/cgi-bin/stable_token``: the same token for every caller
    until it expires, so replicas never invalidate each other (``/cgi-bin/token`` would)."""
    body = {
        "grant_type": "client_credential",
        "appid": app_id,
        "secret": secret,
        "force_refresh": force,
    }
    try:
        response = await http.post(
            "/cgi-bin/stable_token", content=orjson.dumps(body), headers=_JSON
        )
    except httpx.HTTPError as exc:
        raise WeChatAPIError(f"stable_token: {type(exc).__name__}", errcode=-1) from exc
    result = to_result(response, response.content)
    return str(result["access_token"]), float(result.get("expires_in", 7200))


async def wecom_token(
    http: httpx.AsyncClient, *, corp_id: str, secret: str, force: bool
) -> tuple[str, float]:
    """WeCom app token by ``/cgi-bin/gettoken`` (it returns the same token while it is valid)."""
    params = {"corpid": corp_id, "corpsecret": secret}
    try:
        response = await http.get("/cgi-bin/gettoken", params=params)
    except httpx.HTTPError as exc:
        raise WeChatAPIError(f"gettoken: {type(exc).__name__}", errcode=-1) from exc
    result = to_result(response, response.content)
    return str(result["access_token"]), float(result.get("expires_in", 7200))

"""A thin Bot API client over aiohttp: ``{base}/bot{token}/{method}``, typed errors, no token in
any message.

aiogram is not used at runtime (pyproject: importing it costs 2.5 s and 134 MiB); the Bot API is
plain HTTP with one JSON envelope, so a few dozen lines speak it. The token is part of every
URL, so no URL leaves this module: errors name the method, never the address.

Answers are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description":
"...", "parameters": {"retry_after": N, "migrate_to_chat_id": N}}`` (core.telegram.org/bots/api
#making-requests); a proxy in front may answer HTML instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.telegram.inbound import PLATFORM
from bot.errors import BadFormatting, MessageTooLong, PlatformAPIError, connection_reason
from bot.ops.metrics import Metrics

log = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0  # seconds for one ordinary call
UPLOAD_TIMEOUT = 120.0  # sendPhoto / sendDocument with up to 50 MB
NOT_MODIFIED = "message is not modified"


class TelegramError(PlatformAPIError):
    """A Bot API call failed: ``status`` its error_code (HTTP), ``code`` the method, and
    ``retry_after`` on 429 (``parameters.retry_after``)."""

    @property
    def not_modified(self) -> bool:
        return NOT_MODIFIED in self.message


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file sent by multipart upload."""

    name: str
    data: bytes
    mime_type: str = "application/octet-stream"


def to_error(method: str, status: int, body: Any) -> TelegramError:
    """The typed error of a refused call (MessageTooLong and BadFormatting are ours too)."""
    envelope = body if isinstance(body, dict) else {}
    description = str(envelope.get("description") or f"HTTP {status}")
    code = int(envelope.get("error_code") or status)
    parameters = envelope.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    kind: type[TelegramError] = TelegramError
    lowered = description.lower()
    if "message is too long" in lowered or "text is too long" in lowered:
        kind = _TooLong
    elif "can't parse entities" in lowered:
        kind = _BadEntities
    return kind(
        f"{method}: {description}",
        status=code,
        code=method,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
    )


class _TooLong(TelegramError, MessageTooLong):
    pass


class _BadEntities(TelegramError, BadFormatting):
    pass


class TelegramApi:
    """One bot's Bot API; ``call`` returns ``result`` or raises ``TelegramError``."""

    def __init__(
        self,
        token: str,
        base: str,
        *,
        timeout: float = CALL_TIMEOUT,
        metrics: Metrics | None = None,
    ) -> None:
        self._token = token
        self._metrics = metrics
        self._base = base.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        """Called by the adapter's ``close``, after the core has finished the answers in flight."""
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        files: dict[str, InputFile] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-call HTTP deadline)
    ) -> Any:
        url = f"{self._base}/bot{self._token}/{method}"
        values = {k: v for k, v in (params or {}).items() if v is not None}
        limit = aiohttp.ClientTimeout(total=timeout or (UPLOAD_TIMEOUT if files else self._timeout))
        try:
            async with self._client().post(url, timeout=limit, **_body(values, files)) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = connection_reason(exc)
            raise TelegramError(
                f"{method}: Telegram not reachable ({reason or type(exc).__name__})",
                code=method,
                reason=reason,
            ) from None  # the cause's text may hold the URL, and the URL holds the token
        if self._metrics is not None:  # by method name: the URL's path holds the token
            self._metrics.platform_call(PLATFORM, method, limited=status == 429)
        return _result(method, status, raw)

    @asynccontextmanager
    async def download(self, file_path: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """``{base}/file/bot{token}/{file_path}`` (getFile's path), streamed."""
        url = f"{self._base}/file/bot{self._token}/{file_path}"
        limit = aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT, sock_read=30)
        try:
            async with self._client().get(url, timeout=limit) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TelegramError(
                f"file download: Telegram not reachable ({type(exc).__name__})", code="file"
            ) from None


def _body(values: dict[str, Any], files: dict[str, InputFile] | None) -> dict[str, Any]:
    if not files:
        return {"data": json.dumps(values, ensure_ascii=False), "headers": _JSON}
    form = aiohttp.FormData()
    for name, value in values.items():
        form.add_field(name, value if isinstance(value, str) else json.dumps(value))
    for name, file in files.items():
        form.add_field(name, file.data, filename=file.name, content_type=file.mime_type)
    return {"data": form}


_JSON = {"Content-Type": "application/json"}


def _result(method: str, status: int, raw: bytes) -> Any:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("ok") is True and status == 200:
        return body.get("result")
    raise to_error(method, status, body)

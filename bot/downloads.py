"""Files as byte streams with a size cap, and URL fetches that decide per hop what to send.

A ``Download`` is an open stream: the caller reads ``chunks`` inside the source's context, so a
cancelled or refused transfer closes its connection. ``capped`` enforces the limit while bytes
arrive (a lying or missing Content-Length never buffers more than the limit). ``GuardedFetch``
follows redirects itself, asking at every hop whether the host may be contacted at all and which
headers it may see, because httpx and aiohttp only drop ``Authorization`` on cross-origin
redirects and we must never send a platform token to a host that is not the platform's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx

from bot.errors import FileTooLarge, FileUnavailable
from bot.models import Attachment

log = logging.getLogger(__name__)

MAX_HOPS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Download:
    """One file being received: ``size`` when the source said it, ``chunks`` to read once."""

    filename: str
    mime_type: str
    size: int | None
    chunks: AsyncIterator[bytes]


class FileSource(Protocol):
    """Where one platform's attachments come from (Slack files, WeChat media, ...).

    ``describe`` completes what the platform left out (a Slack Connect stub's name and type)
    before the file is judged; ``open`` streams it."""

    async def describe(self, attachment: Attachment) -> Attachment: ...

    def open(
        self, attachment: Attachment, *, limit: int
    ) -> AbstractAsyncContextManager[Download]: ...


async def capped(chunks: AsyncIterator[bytes], limit: int, *, name: str) -> AsyncIterator[bytes]:
    """``chunks`` unchanged until more than ``limit`` bytes came: then FileTooLarge."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise FileTooLarge(f"{name}: more than {limit} bytes", name=name, limit=limit)
        yield chunk


async def read_all(download: Download, limit: int) -> bytes:
    """The whole (small) file: voice notes for speech-to-text, answer files for re-posting."""
    parts = [chunk async for chunk in capped(download.chunks, limit, name=download.filename)]
    return b"".join(parts)


def check_size(size: int | None, limit: int, *, name: str) -> None:
    """Refuse before the first byte when the announced size is already too much."""
    if size is not None and size > limit:
        raise FileTooLarge(f"{name}: {size} bytes > {limit}", name=name, limit=limit)


# Decides, for one hop's URL, the headers to send; None when the URL must not be fetched.
Credentials = Callable[[httpx.URL], dict[str, str] | None]


def build_download_http(*, timeout: float = 30.0) -> httpx.AsyncClient:
    """The client for platform files and Dify's file URLs: explicit timeouts, no redirects
    followed behind our back (``GuardedFetch`` decides each hop)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False, trust_env=True
    )


class GuardedFetch:
    """GETs a URL on an httpx client that never follows redirects by itself."""

    def __init__(self, http: httpx.AsyncClient, *, max_hops: int = MAX_HOPS) -> None:
        self._http = http
        self._max_hops = max_hops

    async def aclose(self) -> None:
        await self._http.aclose()

    @asynccontextmanager
    async def open(
        self, url: str, *, credentials: Credentials, limit: int, name: str
    ) -> AsyncIterator[httpx.Response]:
        """The final response, status 2xx, its Content-Length checked; its body unread."""
        target = httpx.URL(url)
        for _ in range(self._max_hops + 1):
            headers = credentials(target)
            if headers is None:
                raise FileUnavailable(
                    f"{name}: {target.host} is not a host we fetch from", name=name
                )
            request = self._http.build_request("GET", target, headers=headers)
            try:
                response = await self._http.send(request, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                raise FileUnavailable(f"{name}: {type(exc).__name__}", name=name) from exc
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                if not response.is_success:
                    raise FileUnavailable(f"{name}: HTTP {response.status_code}", name=name)
                check_size(_length(response), limit, name=name)
                yield response
                return
            finally:
                await response.aclose()
        raise FileUnavailable(f"{name}: more than {self._max_hops} redirects", name=name)


def body_of(response: httpx.Response, limit: int, *, name: str) -> AsyncIterator[bytes]:
    """The response body as capped chunks (httpx errors become FileUnavailable)."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise FileUnavailable(f"{name}: {type(exc).__name__}", name=name) from exc

    return capped(chunks(), limit, name=name)


def content_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


def _length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None

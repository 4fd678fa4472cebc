"""Files users send on LINE, read from the content API (``api-data.line.me``) by message id.

An image another service hosts (``contentProvider.type`` ``external``) is fetched from its
HTTPS URL instead, from public addresses only and with no credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from adapters.line.api import LineAPI
from bot.errors import FileUnavailable
from bot.files.downloads import Download, GuardedFetch, Hop, body_of, content_type
from bot.models import Attachment


def _public_https(url: httpx.URL) -> Hop | None:
    return Hop() if url.scheme == "https" else None


class LineFiles:
    """The ``FileSource`` of LINE messages."""

    def __init__(self, api: LineAPI, fetch: GuardedFetch) -> None:
        self._api = api
        self._fetch = fetch

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        name = attachment.name
        if attachment.platform_id:
            async with self._api.content(attachment.platform_id, limit=limit, name=name) as got:
                yield _download(got, attachment, limit)
            return
        if not attachment.url:
            raise FileUnavailable(f"{name}: no message id and no URL", name=name)
        async with self._fetch.open(
            attachment.url, policy=_public_https, limit=limit, name=name
        ) as response:
            yield _download(response, attachment, limit)


def _download(response: httpx.Response, attachment: Attachment, limit: int) -> Download:
    served = content_type(response)
    mime = served if served and served != "application/octet-stream" else attachment.mime_type
    length = response.headers.get("content-length", "")
    size = int(length) if length.isdigit() else attachment.size
    name = attachment.name
    return Download(name, mime, size, body_of(response, limit, name=name))

"""Pictures and files users send: ``downloadCode`` → ``POST /v1.0/robot/messageFiles/download``
(robot code + code, with the app's token) → a temporary ``downloadUrl`` → its bytes.

The link comes from DingTalk's authenticated answer, not from the payload, but it is still
fetched through the guarded fetch: over HTTPS from public addresses only, no credentials sent,
re-checked at every redirect. Only a link on the configured API host itself (a private
deployment, or the tests' fake) is taken at any address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from adapters.dingtalk.api import DingTalkAPI, DingTalkAPIError
from bot.errors import FileUnavailable
from bot.files.downloads import Download, GuardedFetch, Hop, body_of, content_type
from bot.models import Attachment


class DingTalkFiles:
    """The ``FileSource`` of DingTalk robot messages."""

    def __init__(self, api: DingTalkAPI, fetch: GuardedFetch) -> None:
        self._api = api
        self._fetch = fetch
        base = httpx.URL(api.api_base)
        self._api_host = (base.scheme, base.host)

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment

    def policy(self, url: httpx.URL) -> Hop | None:
        if (url.scheme, url.host) == self._api_host:
            return Hop(configured=True)
        return Hop() if url.scheme == "https" else None

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        name = attachment.name
        if not attachment.platform_id:
            raise FileUnavailable(f"{name}: no downloadCode", name=name)
        body = {"downloadCode": attachment.platform_id, "robotCode": self._api.client_id}
        try:
            answer = await self._api.call("POST", "/v1.0/robot/messageFiles/download", body)
        except DingTalkAPIError as exc:
            raise FileUnavailable(f"{name}: {exc.code}", name=name) from exc
        url = answer.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise FileUnavailable(f"{name}: no downloadUrl", name=name)
        async with self._fetch.open(url, policy=self.policy, limit=limit, name=name) as response:
            served = content_type(response)
            mime = attachment.mime_type if served in ("", "application/octet-stream") else served
            yield Download(name, mime, None, body_of(response, limit, name=name))

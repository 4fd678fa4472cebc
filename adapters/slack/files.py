"""Slack files both ways: attachments from events, token-guarded downloads, answer files out.

In: a message's ``files[]`` (``file_share`` messages and mentions alike) become attachments.
Slack Connect sends stubs (``file_access: check_file_info``, no URLs) that ``files.info``
completes. ``url_private_download`` needs the bot token (scope ``files:read``). Files are fetched
only from Slack's file host (``files.slack.com`` over HTTPS, and ``files.<host>`` of a
``SLACK_API_URL`` elsewhere, as GovSlack's ``slack-gov.com``) and from the origin of
``SLACK_API_URL`` itself; whatever a payload says, no other host is contacted, re-checked at every
redirect hop, and the public file host must resolve to public addresses. The token goes only
there. Without valid auth Slack answers 200 with an HTML login page (slack.md §5), so HTML where
a file was expected is a failure, not a file.

Out: Dify's answer files go up with ``files_upload_v2`` (scope ``files:write``) into the
answer's thread; if that fails, the links stay in a short message instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.sender import slack_error
from bot.errors import FileUnavailable
from bot.files.answers import AnswerUploads
from bot.files.downloads import Download, GuardedFetch, Hop, body_of, check_size, content_type
from bot.models import Attachment

log = logging.getLogger(__name__)

FILE_HOST = "files.slack.com"


def to_attachments(event: dict[str, Any]) -> tuple[Attachment, ...]:
    """A message's files; stubs keep just their id (``files.info`` fills in the rest)."""
    found = []
    files = event.get("files")
    for item in files if isinstance(files, list) else ():  # a forged event may send anything
        if not isinstance(item, dict) or not item.get("id"):
            continue
        size = item.get("size")
        found.append(
            Attachment(
                name=str(item.get("name") or item.get("title") or item["id"]),
                mime_type=str(item.get("mimetype") or ""),
                size=size if isinstance(size, int) else None,
                url=str(item.get("url_private_download") or item.get("url_private") or "") or None,
                platform_id=str(item["id"]),
                # Audio clips recorded in Slack (``slack_audio``) are spoken questions.
                voice=item.get("subtype") == "slack_audio",
            )
        )
    return tuple(found)


class SlackFiles:
    """The ``FileSource`` for Slack attachments."""

    def __init__(self, client: AsyncWebClient, fetch: GuardedFetch, *, token: str, api_url: str):
        self._client = client
        self._fetch = fetch
        self._auth = {"Authorization": f"Bearer {token}"}
        api = httpx.URL(api_url)
        self._api_origin = (api.scheme, api.host, api.port)
        self._file_hosts = {FILE_HOST, f"files.{api.host}"}

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment if attachment.url else await self._completed(attachment)

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        attachment = await self.describe(attachment)
        name, url = attachment.name, attachment.url or ""
        check_size(attachment.size, limit, name=name)
        async with self._fetch.open(url, policy=self.policy, limit=limit, name=name) as response:
            served = content_type(response)
            if served == "text/html" and not attachment.mime_type.startswith("text/html"):
                raise FileUnavailable(f"{name}: Slack sent a login page (files:read?)", name=name)
            size = attachment.size if "content-encoding" not in response.headers else None
            chunks = body_of(response, limit, name=name)
            yield Download(name, attachment.mime_type or served, size, chunks)

    def policy(self, url: httpx.URL) -> Hop | None:
        """Slack's file host (public addresses only) and the configured API origin, with the
        bot token; nothing else."""
        if (url.scheme, url.host.lower(), url.port) == self._api_origin:
            return Hop(self._auth, configured=True)
        if url.scheme == "https" and url.host.lower() in self._file_hosts:
            return Hop(self._auth)
        return None

    async def _completed(self, stub: Attachment) -> Attachment:
        """A Slack Connect stub, completed by ``files.info``."""
        try:
            response = await self._client.files_info(file=stub.platform_id or "")
        except SlackApiError as exc:
            raise FileUnavailable(f"files.info: {slack_error(exc)}", name=stub.name) from exc
        info = response.get("file") or {}
        completed = to_attachments({"files": [info]})
        if not completed or completed[0].url is None:
            raise FileUnavailable("files.info gave no download URL", name=stub.name)
        return completed[0]


async def post_answer_files(
    files: AnswerUploads, client: AsyncWebClient, channel: str, thread_ts: str | None
) -> None:
    """``files_upload_v2`` into the thread; the links in a message if Slack refuses."""
    links = files.links()
    if files.fetched:
        uploads = [
            {"file": f.data, "filename": f.filename, "title": f.filename} for f in files.fetched
        ]
        try:
            await client.files_upload_v2(file_uploads=uploads, channel=channel, thread_ts=thread_ts)
        except (SlackApiError, SlackRequestError) as exc:
            log.warning("answer files not uploaded to Slack: %s", exc)
            links += [f"{f.filename}: {f.source.url}" for f in files.fetched]
    if links:
        try:
            await client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text="\n".join(links)
            )
        except SlackApiError as exc:
            log.warning("answer file links not posted: %s", slack_error(exc))

"""Telegram files both ways: attachments in by ``getFile`` + download, answer files out by
``sendPhoto`` / ``sendDocument``.

In: ``getFile`` turns a ``file_id`` into a ``file_path`` (valid at least an hour), downloaded from
``{base}/file/bot{token}/{file_path}``; the Bot API refuses files over 20 MB ("file is too big";
a local Bot API server has no such limit). The token is in that URL, so downloads go only through
``TelegramApi`` to ``TELEGRAM_API_BASE``, never through a URL a payload named.

Voice notes are Ogg/Opus, which Dify's ``/audio-to-text`` refuses: they are handed on as WebM
with the same Opus audio (``voice``).

Out: a Dify image goes up with sendPhoto (10 MB, photo-shaped), anything else, or a photo
Telegram refuses, with sendDocument (50 MB); a file that cannot go keeps its link in a message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from adapters.telegram.api import InputFile, TelegramApi, TelegramError
from adapters.telegram.voice import NotOggOpus, ogg_opus_to_webm
from bot.errors import FileTooLarge, FileUnavailable
from bot.files.answers import AnswerUploads, OutFile
from bot.files.downloads import Download, capped
from bot.models import Attachment

log = logging.getLogger(__name__)

MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile's limit on api.telegram.org
MAX_PHOTO = 10 * 1024 * 1024
_CHUNK = 64 * 1024


class TelegramFiles:
    """``bot.files.downloads.FileSource`` for Telegram attachments (``platform_id`` = file_id)."""

    def __init__(self, api: TelegramApi, *, max_download: int | None = MAX_DOWNLOAD) -> None:
        self._api = api
        self._max_download = max_download  # None: a local Bot API server (no 20 MB limit)

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        name = attachment.name
        if self._max_download is not None and (attachment.size or 0) > self._max_download:
            raise FileTooLarge(
                f"{name}: over Telegram's 20 MB", name=name, limit=self._max_download
            )
        try:
            file = await self._api.call("getFile", {"file_id": attachment.platform_id})
        except TelegramError as exc:
            raise FileUnavailable(f"getFile: {exc.message}", name=name) from None
        path = str((file or {}).get("file_path") or "")
        if not path:
            raise FileUnavailable("getFile gave no file_path", name=name)
        try:
            async with self._api.download(path) as response:
                if response.status != 200:
                    raise FileUnavailable(f"download: HTTP {response.status}", name=name)
                size = (file or {}).get("file_size")
                chunks = capped(response.content.iter_chunked(_CHUNK), limit, name=name)
                if attachment.voice and attachment.mime_type == "audio/ogg":
                    yield await _as_webm(name, chunks)
                    return
                yield Download(
                    name, attachment.mime_type, size if isinstance(size, int) else None, chunks
                )
        except TelegramError as exc:
            raise FileUnavailable(exc.message, name=name) from None


async def _as_webm(name: str, chunks: AsyncIterator[bytes]) -> Download:
    """A voice note in the container Dify's speech-to-text takes (``voice`` module); the
    original when it is not Ogg/Opus after all."""
    data = b"".join([chunk async for chunk in chunks])
    try:
        data, name, mime = ogg_opus_to_webm(data), "voice.webm", "audio/webm"
    except NotOggOpus as exc:
        log.info("voice note left as it came: %s", exc)
        mime = "audio/ogg"
    return Download(name, mime, len(data), _once(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


Send = Callable[[str, dict[str, Any], dict[str, InputFile] | None], Awaitable[Any]]


MAX_ANSWER_FILE = 50 * 1024 * 1024  # the Bot API's upload limit


async def post_answer_files(files: AnswerUploads, send: Send, params: dict[str, Any]) -> list[str]:
    """Each file as a photo or document; the links of those that could not go."""
    links = files.links()
    for out in files.fetched:
        if not await _post_one(send, params, out):
            links.append(f"{out.filename}: {out.source.url}")
    return links


async def _post_one(send: Send, params: dict[str, Any], out: OutFile) -> bool:
    upload = InputFile(out.filename, out.data, out.mime_type)
    if out.kind == "image" and len(out.data) <= MAX_PHOTO:
        try:
            await send("sendPhoto", params, {"photo": upload})
            return True
        except TelegramError as exc:  # PHOTO_INVALID_DIMENSIONS, IMAGE_PROCESS_FAILED...
            log.info("photo refused (%s); sending it as a document", exc.message)
    try:
        await send("sendDocument", params, {"document": upload})
        return True
    except TelegramError as exc:
        log.warning("answer file not sent to Telegram: %s", exc.message)
        return False

"""Feishu files both ways: a message's images and files in, an answer's files out.

In: ``GET /open-apis/im/v1/messages/{message_id}/resources/{key}?type=image|file`` with the
tenant token (the only way: Feishu gives no file URL); an attachment's ``platform_id`` is
``message_id/key/type``. Out: Dify's answer files are fetched (their signed URLs expire in
minutes), uploaded (``POST /im/v1/images`` up to 10 MB, ``/im/v1/files`` up to 30 MB, never
empty) and sent as native image/file messages where the answer went; what cannot be uploaded
stays as a link.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from adapters.feishu.api import FeishuAPI, FeishuAPIError
from bot.errors import FileUnavailable
from bot.files.answers import OutFile
from bot.files.downloads import Download, body_of, check_size, content_type
from bot.models import Attachment

log = logging.getLogger(__name__)

IMAGE_LIMIT = 10 * 1024 * 1024
FILE_LIMIT = 30 * 1024 * 1024
# /im/v1/files' file_type by extension; anything else goes as "stream" (a plain file).
_FILE_TYPES = {"opus": "opus", "mp4": "mp4", "pdf": "pdf", "doc": "doc", "docx": "doc",
               "xls": "xls", "xlsx": "xls", "csv": "xls", "ppt": "ppt", "pptx": "ppt"}  # fmt: skip
Send = Callable[[str, dict[str, Any], str], Awaitable[str]]


class FeishuFiles:
    """The ``FileSource`` for Feishu attachments."""

    def __init__(self, api: FeishuAPI) -> None:
        self._api = api

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        message_id, key, kind = _resource(attachment)
        name = attachment.name
        check_size(attachment.size, limit, name=name)
        path = f"/open-apis/im/v1/messages/{message_id}/resources/{key}"
        try:
            async with self._api.download(path, {"type": kind}) as response:
                served = content_type(response)
                mime = served if served not in ("", "application/octet-stream") else ""
                chunks = body_of(response, limit, name=name)
                yield Download(_named(name, mime), mime or attachment.mime_type, None, chunks)
        except FeishuAPIError as exc:
            raise FileUnavailable(f"{name}: {exc}", name=name) from exc


def _resource(attachment: Attachment) -> tuple[str, str, str]:
    parts = (attachment.platform_id or "").split("/")
    if len(parts) != 3 or parts[2] not in ("image", "file"):
        raise FileUnavailable(f"{attachment.name}: not a Feishu resource", name=attachment.name)
    return parts[0], parts[1], parts[2]


def _named(name: str, mime: str) -> str:
    """An image's name from what was served (events name no image)."""
    if name == "image.png" and mime.startswith("image/"):
        return "image." + mime.split("/", 1)[1].replace("jpeg", "jpg")
    return name


async def send_files(api: FeishuAPI, files: list[OutFile], send: Send) -> list[OutFile]:
    """Upload each file and send it with ``send(msg_type, content, uuid_part)``; those that
    could not be (too large for Feishu, or refused) are returned: the caller links them."""
    failed: list[OutFile] = []
    for number, out in enumerate(files):
        if len(out.data) > FILE_LIMIT:
            failed.append(out)
            continue
        try:
            if out.kind == "image" and len(out.data) <= IMAGE_LIMIT:
                key = await api.upload_image(out.data, out.filename)
                await send("image", {"image_key": key}, f"f{number}")
            else:
                extension = out.filename.rsplit(".", 1)[-1].lower() if "." in out.filename else ""
                file_type = _FILE_TYPES.get(extension, "stream")
                key = await api.upload_file(out.data, out.filename, file_type)
                await send("file", {"file_key": key}, f"f{number}")
        except FeishuAPIError as exc:
            log.warning("answer file not sent to Feishu: %s", exc)
            failed.append(out)
    return failed

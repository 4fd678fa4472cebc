"""WeChat and WeCom messages out: 2048-byte text parts, customer service, answer files as media."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from logging import ERROR

from adapters.tencent.api import PlatformAPI
from adapters.tencent.errors import WeChatAPIError
from bot.files.answers import AnswerFiles, LinkedFile, fallback_links, without
from bot.files.types import MB
from bot.models import Answer
from bot.ops.effort import best_effort
from bot.text import split_text, utf8_length

log = logging.getLogger(__name__)

MAX_TEXT = 2048  # bytes of UTF-8 in one text message; longer ones are silently not delivered
# Temporary media limits (wechat.md §6.2, §7): images 10 MB (JPG/PNG/GIF), files 20 MB.
IMAGE_LIMIT = 10 * MB
MEDIA_LIMIT = 20 * MB
_IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/gif"})


def to_parts(text: str, notice: str) -> list[str]:
    """``text`` as WeChat messages, cut at sentence boundaries, each with room for ``notice``."""
    if utf8_length(text) <= MAX_TEXT:
        return [text]
    room = utf8_length(notice) + 2  # "\n\n" + notice, added to a part when more is owed
    return split_text(text, MAX_TEXT - room, measure=utf8_length)


class CustomerService:
    """客服消息: messages outside the passive reply (verified service accounts only)."""

    def __init__(self, api: PlatformAPI) -> None:
        self._api = api

    async def send_text(self, user_id: str, text: str) -> None:
        body = {"touser": user_id, "msgtype": "text", "text": {"content": text}}
        await self._api.post("/cgi-bin/message/custom/send", body)

    async def typing(self, user_id: str) -> None:
        """Show "typing…" for up to 15 s (only within 30 s of the user's message)."""
        await self._api.post(
            "/cgi-bin/message/custom/typing", {"touser": user_id, "command": "Typing"}
        )

    async def send_media(self, user_id: str, kind: str, media_id: str) -> None:
        body = {"touser": user_id, "msgtype": kind, kind: {"media_id": media_id}}
        await self._api.post("/cgi-bin/message/custom/send", body)


@dataclass(frozen=True, slots=True)
class AnswerMedia:
    """One answer's Dify files uploaded as WeChat/WeCom temporary media, ready to send.

    ``media`` holds ``(msgtype, media_id)`` pairs; ``text`` no longer links the files they
    carry, and ``links`` lists files that could not go natively and that the text does not
    already link (so none is lost). Images must be JPG/PNG/GIF; the Official Account takes
    only images this way (``kinds``), WeCom apps also take any other file as ``file``.
    """

    text: str
    media: list[tuple[str, str]]
    links: list[str]

    @classmethod
    async def prepare(
        cls, files: AnswerFiles, api: PlatformAPI, text: str, answer: Answer, *, kinds: set[str]
    ) -> AnswerMedia:
        found = files.find(text, answer)
        with best_effort("fetch the answer's files (their links stay)", log, level=ERROR) as got:
            fetched, failed = await files.fetch_all(found, limit=MEDIA_LIMIT)
        if got.failed:
            return cls(text, [], [])
        media: list[tuple[str, str]] = []
        sent: list[LinkedFile] = []
        for out in fetched:
            kind = "image" if out.mime_type in _IMAGE_MIMES else "file"
            if kind not in kinds or (kind == "image" and len(out.data) > IMAGE_LIMIT):
                failed.append(out.source)
                continue
            try:
                media_id = await api.upload(
                    kind, filename=out.filename, data=out.data, mime_type=out.mime_type
                )
            except WeChatAPIError as exc:
                log.warning("answer file not uploaded as media: %s", exc)
                failed.append(out.source)
                continue
            media.append((kind, media_id))
            sent.append(out.source)
        stripped = without(text, sent) if sent else text
        return cls(stripped or text, media, fallback_links(stripped, failed))

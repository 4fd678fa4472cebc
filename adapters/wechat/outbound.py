"""Official Account messages out: 2048-byte text parts and the customer-service API."""

from __future__ import annotations

from adapters.wechat.api import PlatformAPI
from bot.text import split_text, utf8_length

MAX_TEXT = 2048  # bytes of UTF-8 in one text message; longer ones are silently not delivered


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

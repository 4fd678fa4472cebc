"""The fake LINE data API (``api-data.line.me``): files users sent, downloadable by message ID,
with the 202 / ``processing`` answers while a large video or audio is still being prepared."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tests.fakes.line_checks import error


@dataclass
class Content:
    """A file a user sent: downloadable from the data API once prepared."""

    data: bytes
    content_type: str
    polls_before_ready: int = 0  # answers 202 (and "processing") this many more times
    failed: bool = False
    preview: bytes | None = None


class LineContents(dict[str, Content]):
    """Content by message ID, and the answer to ``GET /v2/bot/message/{id}/content[/...]``."""

    def add(
        self,
        message_id: str,
        data: bytes,
        content_type: str,
        *,
        polls_before_ready: int = 0,
        preview: bytes | None = None,
    ) -> None:
        self[message_id] = Content(data, content_type, polls_before_ready, preview=preview)

    def answer(self, message_id: str, suffix: str) -> web.Response:
        content = self.get(message_id)
        if content is None:  # unknown, or older than LINE keeps content
            return web.json_response(error("Not found"), status=404)
        preparing = content.polls_before_ready > 0
        content.polls_before_ready = max(0, content.polls_before_ready - 1)
        if suffix == "/transcoding":
            status = "failed" if content.failed else "processing" if preparing else "succeeded"
            return web.json_response({"status": status})
        if preparing:
            return web.Response(status=202)  # a large video or audio still being prepared
        data = content.preview if suffix == "/preview" else content.data
        if data is None:
            return web.json_response(error("Not found"), status=404)
        return web.Response(body=data, content_type=content.content_type)

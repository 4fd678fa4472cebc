"""The fake Feishu's IM endpoints (``/open-apis/im/v1``): send, reply, PATCH a card, recall,
reactions, image/file upload and message-resource download. The state they change lives in
:class:`~tests.fakes.feishu_store.FeishuMessages`; limits and error codes are in its docstring
and below."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.fakes.feishu_cards import CardKit
from tests.fakes.feishu_store import (
    FILE_LIMIT,
    FILE_TYPES,
    IMAGE_LIMIT,
    FeishuError,
    FeishuMessage,
    FeishuMessages,
    Media,
    invalid,
)

if TYPE_CHECKING:
    from tests.fakes.feishu import FeishuCall, Handler


class FeishuIM:
    def __init__(
        self,
        messages: FeishuMessages,
        cards: CardKit,
        *,
        app_id: str,
        tenant_key: str,
        clock: Callable[[], float],
        patch_per_second: int = 5,
    ) -> None:
        self.messages, self.cards = messages, cards
        self.app_id, self.tenant_key = app_id, tenant_key
        self._clock = clock
        self.patch_per_second = patch_per_second  # per message (documented: 5 QPS)
        self.media_sent: dict[str, int] = {}  # resource key -> bytes written before hang-up
        self._patches: dict[str, deque[float]] = {}

    def routes(self, api: str) -> list[tuple[str, str, str, Handler, bool]]:
        msg = f"{api}/im/v1/messages/{{message_id}}"
        return [
            ("POST", f"{api}/im/v1/messages", "im.message.create", self.create, True),
            ("POST", f"{msg}/reply", "im.message.reply", self.reply, True),
            ("PATCH", msg, "im.message.patch", self.patch, True),
            ("DELETE", msg, "im.message.delete", self.delete, True),
            ("POST", f"{msg}/reactions", "im.message_reaction.create", self.react, True),
            ("DELETE", f"{msg}/reactions/{{reaction_id}}", "im.message_reaction.delete",
             self.unreact, True),
            ("GET", f"{msg}/resources/{{file_key}}", "im.message_resource.get", self.resource,
             True),
            ("POST", f"{api}/im/v1/images", "im.image.create", self.upload_image, True),
            ("POST", f"{api}/im/v1/files", "im.file.create", self.upload_file, True),
        ]  # fmt: skip

    # ---- messages -----------------------------------------------------------------------------

    async def create(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        body = json_body(call)
        self._check_card_reference(body)
        message = self.messages.create(call.query.get("receive_id_type", ""), body)
        return self._message_data(message)

    async def reply(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        body = json_body(call)
        self._check_card_reference(body)
        message = self.messages.reply(request.match_info["message_id"], body)
        return self._message_data(message)

    async def patch(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        message_id = request.match_info["message_id"]
        self._patch_limit(message_id)
        self.messages.patch(message_id, json_body(call))
        return ok()

    async def delete(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        self.messages.delete(request.match_info["message_id"])
        return ok()

    def _message_data(self, message: FeishuMessage) -> dict[str, Any]:
        return ok(message.to_api(app_id=self.app_id, tenant_key=self.tenant_key))

    def _check_card_reference(self, body: dict[str, Any]) -> None:
        if body.get("msg_type") != "interactive" or not isinstance(body.get("content"), str):
            return
        try:
            content = json.loads(body["content"])
        except ValueError:
            return
        if isinstance(content, dict) and content.get("type") == "card":
            card_id = str(content.get("data", {}).get("card_id", ""))
            if card_id not in self.cards.cards:
                raise FeishuError(230099, f"Failed to create card content: no card {card_id}")

    def _patch_limit(self, message_id: str) -> None:
        now = self._clock()
        window = self._patches.setdefault(message_id, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.patch_per_second:
            # Real traffic: HTTP 400, no retry hint; the caller has to slow down by itself.
            raise FeishuError(230020, "This operation triggers the frequency limit, "
                              "ext=Update the single messages too frequently")  # fmt: skip
        window.append(now)

    # ---- reactions ----------------------------------------------------------------------------

    async def react(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        emoji = json_body(call).get("reaction_type", {}).get("emoji_type")
        if not isinstance(emoji, str) or not emoji:
            raise invalid("reaction_type.emoji_type")
        reaction_id = self.messages.react(request.match_info["message_id"], emoji)
        return ok(self._reaction(reaction_id, emoji))

    async def unreact(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        reaction_id = request.match_info["reaction_id"]
        emoji = self.messages.unreact(request.match_info["message_id"], reaction_id)
        return ok(self._reaction(reaction_id, emoji))

    def _reaction(self, reaction_id: str, emoji: str) -> dict[str, Any]:
        operator = {"operator_id": self.app_id, "operator_type": "app"}
        return {"reaction_id": reaction_id, "operator": operator,
                "action_time": str(int(time.time() * 1000)),
                "reaction_type": {"emoji_type": emoji}}  # fmt: skip

    # ---- files --------------------------------------------------------------------------------

    async def resource(self, call: FeishuCall, request: web.Request) -> web.StreamResponse:
        key = request.match_info["file_key"]
        kind = call.query.get("type", "")
        if kind not in ("image", "file"):
            raise invalid("type must be image or file")
        media = self.messages.resource(request.match_info["message_id"], key, kind)
        # The name goes out as raw UTF-8 (lark-oapi re-decodes a latin-1 read of it as UTF-8).
        disposition = f'attachment; filename="{media.file_name or key}"'
        response = web.StreamResponse(
            headers={"Content-Type": media.content_type, "Content-Disposition": disposition}
        )
        await response.prepare(request)
        # Streamed in 64 KiB pieces without a length, counting what got out before a client
        # that enforces a size cap hangs up.
        self.media_sent[key] = 0
        try:
            for start in range(0, len(media.data), 65536):
                await response.write(media.data[start : start + 65536])
                self.media_sent[key] += len(media.data[start : start + 65536])
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def upload_image(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        fields = call.body if isinstance(call.body, dict) else {}
        if fields.get("image_type") not in ("message", "avatar"):
            raise FeishuError(234001, "Invalid request param: image_type.")
        image = fields.get("image")
        if not isinstance(image, Media) or not image.data:
            raise FeishuError(234001, "Invalid request param: image.")
        if len(image.data) > IMAGE_LIMIT:
            raise FeishuError(234006, "The file size exceeds the limit.")
        image.content_type = image_type(image.data)
        if not image.content_type:
            raise FeishuError(234011, "Can't recognize image format.")
        image.kind = "image"
        return ok({"image_key": self.messages.upload(image)})

    async def upload_file(self, call: FeishuCall, request: web.Request) -> dict[str, Any]:
        fields = call.body if isinstance(call.body, dict) else {}
        if fields.get("file_type") not in FILE_TYPES:
            raise FeishuError(234001, "Invalid request param: file_type.")
        if not fields.get("file_name"):
            raise FeishuError(234001, "Invalid request param: file_name.")
        upload = fields.get("file")
        if not isinstance(upload, Media):
            raise FeishuError(234001, "Invalid request param: file.")
        if not upload.data:
            raise FeishuError(234010, "File's size can't be 0.")
        if len(upload.data) > FILE_LIMIT:
            raise FeishuError(234006, "The file size exceeds the limit.")
        upload.file_name, upload.kind = str(fields["file_name"]), "file"
        return ok({"file_key": self.messages.upload(upload)})


def ok(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": 0, "msg": "success", "data": data if data is not None else {}}


def json_body(call: FeishuCall) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise invalid("request body must be a JSON object")
    return call.body


async def read_multipart(request: web.Request) -> dict[str, Any]:
    """Every part, files as :class:`Media` whether or not the client named them (requests'
    toolbelt sends an unnamed part for a BytesIO)."""
    fields: dict[str, Any] = {}
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        data = await part.read(decode=False)
        if part.filename is not None or part.name in ("image", "file"):
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            fields[part.name] = Media(bytes(data), content_type, part.filename or "")
        else:
            fields[part.name] = bytes(data).decode()
    return fields


def image_type(data: bytes) -> str:
    signatures = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg",
                  b"GIF87a": "image/gif", b"GIF89a": "image/gif", b"BM": "image/bmp",
                  b"II*\x00": "image/tiff", b"MM\x00*": "image/tiff",
                  b"\x00\x00\x01\x00": "image/x-icon"}  # fmt: skip
    for magic, kind in signatures.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""

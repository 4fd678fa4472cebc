"""The fake Dify's non-generating endpoints: app info, uploads, history, feedback, audio."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.dify_state import (
    FILE_PARTS,
    RECORDED,
    RecordedRequest,
    StoredConversation,
    StoredMessage,
    UploadedFile,
    upload_body,
)
from tests.fakes.dify_wire import error_response, json_response, not_exists_message

if TYPE_CHECKING:
    from tests.fakes.dify import FakeDify

SUGGESTIONS = ["Can you tell me more?", "What else should I know?", "Can you give an example?"]
# /audio-to-text accepts audio/mp3, m4a, wav, amr, mpga, webm... but not the common audio/mpeg,
# nor audio/ogg (Telegram's voice notes: the issue 20 text lists what it takes, Ogg is not in it).
REJECTED_AUDIO = frozenset({"audio/mpeg", "audio/ogg"})


def add_routes(app: web.Application, fake: FakeDify) -> None:
    routes = ManagementRoutes(fake)
    app.router.add_get("/v1/info", routes.info)
    app.router.add_get("/v1/parameters", routes.parameters)
    app.router.add_post("/v1/files/upload", routes.upload)
    app.router.add_get("/files/{file_id}/file-preview", routes.preview)
    app.router.add_get("/files/tools/{name}", routes.tool_file)
    app.router.add_get("/v1/messages", routes.messages)
    app.router.add_get("/v1/conversations", routes.conversations)
    app.router.add_delete("/v1/conversations/{conversation_id}", routes.delete_conversation)
    app.router.add_post("/v1/conversations/{conversation_id}/name", routes.rename)
    app.router.add_post("/v1/messages/{message_id}/feedbacks", routes.feedback)
    app.router.add_get("/v1/messages/{message_id}/suggested", routes.suggested)
    app.router.add_post("/v1/audio-to-text", routes.audio_to_text)


def _recorded(request: web.Request) -> RecordedRequest:
    return request[RECORDED]


def _body(request: web.Request) -> dict[str, Any]:
    body = _recorded(request).json
    return body if isinstance(body, dict) else {}


class ManagementRoutes:
    def __init__(self, fake: FakeDify) -> None:
        self.fake = fake

    def _owned(self, conversation_id: str, user: object) -> StoredConversation | None:
        """A user's own conversation; others' and deleted ones look the same: absent."""
        if self.fake.conversations.get(conversation_id) != str(user):
            return None
        record = self.fake.records.get(conversation_id)
        if record is None:  # seeded by a test through ``conversations`` alone
            record = StoredConversation(conversation_id, str(user), "New conversation", {}, 0, 0)
            self.fake.records[conversation_id] = record
        return record

    def _message(self, message_id: str) -> StoredMessage | None:
        for record in self.fake.records.values():
            for message in record.messages:
                if message.id == message_id:
                    return message
        return None

    async def info(self, request: web.Request) -> web.Response:
        return json_response(self.fake.info)

    async def parameters(self, request: web.Request) -> web.Response:
        return json_response(self.fake.parameters)

    async def upload(self, request: web.Request) -> web.Response:
        recorded = _recorded(request)
        if "file" not in recorded.files:
            return error_response(400, "no_file_uploaded", "Please upload your file.")
        if request.get(FILE_PARTS, 0) > 1:
            return error_response(400, "too_many_files", "Only one file is allowed.")
        filename, mime_type, data = recorded.files["file"]
        if not filename:
            return error_response(
                400, "filename_not_exists_error", "The specified filename does not exist."
            )
        limit = self.fake.upload_limit_mb
        if limit and len(data) > limit * 1024 * 1024:
            return error_response(413, "file_too_large", "")  # really empty (dify-api.md §9)
        user = recorded.form.get("user") or "DEFAULT-USER"
        file_id = str(uuid.uuid4())
        upload = UploadedFile(filename, mime_type, data, user)
        self.fake.uploads[file_id] = upload
        body = upload_body(
            file_id,
            upload,
            origin=self.fake.origin,
            end_user_id=self.fake.end_user_id(user),
            tenant_id=self.fake.tenant_id,
        )
        return json_response(body, status=201)

    async def preview(self, request: web.Request) -> web.Response:
        upload = self.fake.uploads.get(request.match_info["file_id"])
        if upload is None:
            return error_response(404, "file_not_found", "File not found.")
        return web.Response(body=upload.data, headers={"Content-Type": upload.mime_type})

    async def tool_file(self, request: web.Request) -> web.Response:
        """``/files/tools/<id>.<ext>``: a tool's output file (``message_file`` URLs); tests put
        its bytes in ``uploads`` under the id."""
        file_id = request.match_info["name"].split(".", 1)[0]
        upload = self.fake.uploads.get(file_id)
        if upload is None or "sign" not in request.query:
            return error_response(404, "file_not_found", "File not found.")
        return web.Response(body=upload.data, headers={"Content-Type": upload.mime_type})

    async def messages(self, request: web.Request) -> web.Response:
        query = _recorded(request).query
        record = self._owned(query.get("conversation_id", ""), query.get("user", ""))
        if record is None:
            return error_response(404, "not_found", not_exists_message("/messages"))
        items = [m.to_api() for m in record.messages]
        first_id = query.get("first_id")
        if first_id:
            ids = [item["id"] for item in items]
            items = items[: ids.index(first_id)] if first_id in ids else []
        limit = int(query.get("limit") or 20)
        return json_response(
            {"limit": limit, "has_more": len(items) > limit, "data": items[-limit:]}
        )

    async def conversations(self, request: web.Request) -> web.Response:
        query = _recorded(request).query
        user = query.get("user", "")
        owned = [
            self._owned(cid, user)
            for cid, owner in self.fake.conversations.items()
            if owner == user
        ]
        ranked = sorted(
            enumerate(r for r in owned if r), key=lambda p: (p[1].updated_at, p[0]), reverse=True
        )
        limit = int(query.get("limit") or 20)
        data = [record.to_api() for _, record in ranked]
        return json_response({"limit": limit, "has_more": len(data) > limit, "data": data[:limit]})

    async def delete_conversation(self, request: web.Request) -> web.Response:
        conversation_id = request.match_info["conversation_id"]
        if self._owned(conversation_id, _body(request).get("user")) is None:
            return error_response(404, "not_found", not_exists_message("/conversations"))
        del self.fake.conversations[conversation_id]
        self.fake.records.pop(conversation_id, None)
        # 204 with the JSON content type but no body (conversation_delete.http).
        return web.Response(
            status=204, reason="NO CONTENT", headers={"Content-Type": "application/json"}
        )

    async def rename(self, request: web.Request) -> web.Response:
        body = _body(request)
        record = self._owned(request.match_info["conversation_id"], body.get("user"))
        if record is None:
            return error_response(404, "not_found", not_exists_message("/conversations"))
        if body.get("auto_generate"):
            record.name = record.messages[0].query if record.messages else record.name
        elif body.get("name"):
            record.name = str(body["name"])
        return json_response(record.to_api())

    async def feedback(self, request: web.Request) -> web.Response:
        body = _body(request)
        message = self._message(request.match_info["message_id"])
        if message is not None:
            rating = body.get("rating")
            message.feedback = {"rating": rating} if rating else None
        return json_response({"result": "success"})

    async def suggested(self, request: web.Request) -> web.Response:
        feature = self.fake.parameters.get("suggested_questions_after_answer") or {}
        if not feature.get("enabled"):
            return error_response(400, "bad_request", "Suggested Questions Is Disabled.")
        return json_response({"result": "success", "data": SUGGESTIONS})

    async def audio_to_text(self, request: web.Request) -> web.Response:
        recorded = _recorded(request)
        if "file" not in recorded.files:
            return error_response(400, "no_audio_uploaded", "Please upload your audio.")
        filename, mime_type, _ = recorded.files["file"]
        if mime_type in REJECTED_AUDIO:
            return error_response(415, "unsupported_audio_type", "Audio type not allowed.")
        return json_response({"text": f"transcribed: {filename}"})

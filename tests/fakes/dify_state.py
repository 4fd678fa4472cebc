"""What the fake Dify remembers: uploads, conversations and their messages, in API shapes."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from tests.fakes.dify_behaviours import Behaviour

NO_PARENT = "00000000-0000-0000-0000-000000000000"


@dataclass
class RecordedRequest:
    """One request as it arrived; ``files`` maps a field to (filename, content type, bytes)."""

    method: str
    path: str  # after /v1
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)


# Per-request storage shared by the middleware and the route modules.
RECORDED = web.RequestKey("recorded", RecordedRequest)
SCRIPT = web.RequestKey[Behaviour | None]("script")
FILE_PARTS = web.RequestKey("file_parts", int)


class UploadedFile(NamedTuple):
    filename: str
    mime_type: str
    data: bytes
    user: str


def signed_url(origin: str, file_id: str) -> str:
    """``{FILES_URL}/files/<id>/file-preview?timestamp&nonce&sign`` like 1.13.2 signs it."""
    stamp, nonce = int(time.time()), secrets.token_hex(16)
    return (
        f"{origin}/files/{file_id}/file-preview?timestamp={stamp}&nonce={nonce}&sign=ZmFrZQ%3D%3D"
    )


def file_type(mime_type: str) -> str:
    kind = mime_type.split("/", 1)[0]
    return kind if kind in ("image", "audio", "video") else "document"


@dataclass
class StoredMessage:
    id: str
    conversation_id: str
    query: str
    inputs: dict[str, Any]
    created_at: int
    answer: str = ""
    message_files: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, Any] | None = None
    # 1.14.1: a paused run's message is "paused" (streaming only), an aborted one "error";
    # extra_contents lists its Human Input forms (pending with the token, or what was answered).
    status: str = "normal"
    error: str | None = None
    extra_contents: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """One item of ``GET /messages`` (messages.response.json)."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "parent_message_id": NO_PARENT,
            "inputs": self.inputs,
            "query": self.query,
            "answer": self.answer,
            "feedback": self.feedback,
            "retriever_resources": [],
            "created_at": self.created_at,
            "agent_thoughts": [],
            "message_files": self.message_files,
            "status": self.status,
            "error": self.error,
            "extra_contents": self.extra_contents,
        }


@dataclass
class StoredConversation:
    id: str
    user: str
    name: str
    inputs: dict[str, Any]
    created_at: int
    updated_at: int
    messages: list[StoredMessage] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """One item of ``GET /conversations`` (conversations.response.json)."""
        return {
            "id": self.id,
            "name": self.name,
            "inputs": self.inputs,
            "status": "normal",
            "introduction": "",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def upload_body(
    file_id: str, upload: UploadedFile, *, origin: str, end_user_id: str, tenant_id: str
) -> dict[str, Any]:
    """The 201 body of ``POST /files/upload`` (files_upload.response.json)."""
    extension = upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else ""
    return {
        "id": file_id,
        "name": upload.filename,
        "size": len(upload.data),
        "extension": extension,
        "mime_type": upload.mime_type,
        "created_by": end_user_id,
        "created_at": int(time.time()),
        "preview_url": None,
        "source_url": signed_url(origin, file_id),
        "original_url": None,
        "user_id": None,
        "tenant_id": tenant_id,
        "conversation_id": None,
        "file_key": None,
    }


def message_file(
    file_id: str, upload: UploadedFile, *, origin: str, ref: dict[str, Any]
) -> dict[str, Any]:
    """A user file of a stored message (files_messages_history.http)."""
    return {
        "id": str(uuid.uuid4()),
        "filename": upload.filename,
        "type": str(ref.get("type") or file_type(upload.mime_type)),
        "url": signed_url(origin, file_id),
        "mime_type": upload.mime_type,
        "size": len(upload.data),
        "transfer_method": "local_file",
        "belongs_to": "user",
        "upload_file_id": file_id,
    }

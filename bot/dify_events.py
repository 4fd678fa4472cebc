"""Dify stream payloads (decoded JSON) turned into typed answer events."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from bot.errors import DifyStreamError
from bot.models import (
    AgentThought,
    AnswerEnd,
    AnswerEvent,
    FileOut,
    Progress,
    TextDelta,
    TextReplace,
)

_PROGRESS = {
    "workflow_started": ("workflow", "started"),
    "node_started": ("node", "started"),
    "node_finished": ("node", "finished"),
    "node_retry": ("node", "retry"),
    "iteration_started": ("iteration", "started"),
    "iteration_completed": ("iteration", "finished"),
    "loop_started": ("loop", "started"),
    "loop_completed": ("loop", "finished"),
}

# workflow_finished statuses: "partial-succeeded" still carries a usable answer.
_END_STATUS = {"succeeded": "succeeded", "partial-succeeded": "succeeded", "stopped": "stopped"}


def to_event(payload: dict[str, Any], *, mode: str, origin: str) -> AnswerEvent | None:
    """The typed event for one payload, None for events we ignore; ``error`` raises.

    ``mode`` is the app mode from ``/info``: New Agent apps (``agent``) close with one ``message``
    holding the whole answer, so there it replaces instead of appending. ``origin`` resolves the
    relative file URLs Dify sends when its FILES_URL is unset.
    """
    kind = payload.get("event")
    if not isinstance(kind, str):
        return None
    if kind in ("message", "agent_message"):
        text = _str(payload.get("answer"))
        return TextReplace(text) if kind == "message" and mode == "agent" else TextDelta(text)
    if kind == "message_replace":
        return TextReplace(_str(payload.get("answer")))
    data = payload.get("data")
    data = data if isinstance(data, dict) else {}
    if kind == "text_chunk":
        return TextDelta(_str(data.get("text")))
    if kind == "text_replace":
        return TextReplace(_str(data.get("text")))
    if kind == "agent_thought":
        return _agent_thought(payload)
    if kind == "message_file":
        return _file(payload, origin)
    if kind in _PROGRESS:
        what, status = _PROGRESS[kind]
        return Progress(what, status, _str(data.get("title")), _str(data.get("node_type")))
    if kind == "message_end":
        return _message_end(payload, origin)
    if kind in ("workflow_finished", "workflow_paused"):
        return _workflow_end(kind, payload, data, origin)
    if kind == "error":
        raise DifyStreamError(
            _str(payload.get("message")) or "error event",
            status=_int(payload.get("status")),
            code=_str(payload.get("code")),
        )
    return None


def _agent_thought(payload: dict[str, Any]) -> AgentThought:
    return AgentThought(
        id=_str(payload.get("id")),
        position=_int(payload.get("position")) or 0,
        thought=_str(payload.get("thought")),
        tool=_str(payload.get("tool")),
        tool_input=_str(payload.get("tool_input")),
        observation=_str(payload.get("observation")),
    )


def _message_end(payload: dict[str, Any], origin: str) -> AnswerEnd:
    metadata = payload.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    usage = metadata.get("usage")
    resources = metadata.get("retriever_resources")
    return AnswerEnd(
        message_id=_str(payload.get("message_id") or payload.get("id")),
        conversation_id=_str(payload.get("conversation_id")),
        usage=usage if isinstance(usage, dict) else {},
        retriever_resources=tuple(r for r in resources or () if isinstance(r, dict)),
        files=_files(payload.get("files"), origin),
    )


def _workflow_end(
    kind: str, payload: dict[str, Any], data: dict[str, Any], origin: str
) -> AnswerEnd:
    status = "paused" if kind == "workflow_paused" else _str(data.get("status"))
    outputs = data.get("outputs")
    return AnswerEnd(
        message_id=_str(payload.get("message_id")),
        conversation_id=_str(payload.get("conversation_id")),
        status=_END_STATUS.get(status, "paused" if status == "paused" else "failed"),
        error=_str(data.get("error")),
        files=_files(data.get("files"), origin),
        outputs=outputs if isinstance(outputs, dict) else {},
    )


def _files(raw: Any, origin: str) -> tuple[FileOut, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(_file(item, origin) for item in raw if isinstance(item, dict) and item.get("url"))


def _file(item: dict[str, Any], origin: str) -> FileOut:
    return FileOut(
        url=urljoin(origin, _str(item.get("url"))),
        type=_str(item.get("type")) or "file",
        id=_str(item.get("id") or item.get("related_id")),
        filename=_str(item.get("filename")),
        mime_type=_str(item.get("mime_type")),
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

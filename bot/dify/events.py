"""Dify stream payloads (decoded JSON) turned into typed answer events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from bot.errors import DifyStreamError
from bot.models import (
    AgentThought,
    AnswerEnd,
    AnswerEvent,
    FileOut,
    FormAction,
    FormField,
    FormFilled,
    FormRequest,
    FormTimedOut,
    Progress,
    Reasoning,
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
        if kind == "workflow_started" and data.get("reason") == "resumption":
            status = "resumed"  # a paused run goes on (1.14.1: same run, task and message)
        return Progress(what, status, _str(data.get("title")), _str(data.get("node_type")))
    if kind == "message_end":
        return _message_end(payload, origin)
    if kind in ("workflow_finished", "workflow_paused"):
        return _workflow_end(kind, payload, data, origin)
    if kind in _RUN_EVENTS:
        return _RUN_EVENTS[kind](payload, data)
    if kind == "error":
        raise DifyStreamError(
            _str(payload.get("message")) or "error event",
            status=_int(payload.get("status")),
            code=_str(payload.get("code")),
        )
    # tts_message / tts_message_end (base64 MP3 for auto-play), agent_log, ping: not shown.
    return None


def _reasoning(payload: dict[str, Any], data: dict[str, Any]) -> Reasoning:
    return Reasoning(
        _str(data.get("reasoning")), data.get("is_final") is True, _str(data.get("node_id"))
    )


def _form_required(payload: dict[str, Any], data: dict[str, Any]) -> FormRequest:
    return to_form(data, workflow_run_id=_str(payload.get("workflow_run_id")))


def _form_filled(payload: dict[str, Any], data: dict[str, Any]) -> FormFilled:
    """1.14.1 sends no ``submitted_data`` here (hitl_chatflow_events_across_submit)."""
    return FormFilled(
        node_id=_str(data.get("node_id")),
        node_title=_str(data.get("node_title")),
        action_id=_str(data.get("action_id")),
        action_text=_str(data.get("action_text")),
        content=_str(data.get("rendered_content")),
    )


def _form_timeout(payload: dict[str, Any], data: dict[str, Any]) -> FormTimedOut:
    return FormTimedOut(
        _str(data.get("node_id")), _str(data.get("node_title")), _int(data.get("expiration_time"))
    )


# Chatflow/Workflow events beside the answer text: reasoning and the Human Input form's life.
_RUN_EVENTS: dict[str, Callable[[dict[str, Any], dict[str, Any]], AnswerEvent]] = {
    "reasoning_chunk": _reasoning,
    "human_input_required": _form_required,
    "human_input_form_filled": _form_filled,
    "human_input_form_timeout": _form_timeout,
}


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
    run_id = _str(payload.get("workflow_run_id") or data.get("workflow_run_id"))
    reasons = data.get("reasons") if kind == "workflow_paused" else None
    forms = tuple(
        to_form(reason, workflow_run_id=run_id)
        for reason in reasons or ()
        if isinstance(reason, dict)
        and reason.get("TYPE", "human_input_required") == "human_input_required"
    )
    return AnswerEnd(
        message_id=_str(payload.get("message_id")),
        conversation_id=_str(payload.get("conversation_id")),
        status=_END_STATUS.get(status, "paused" if status == "paused" else "failed"),
        error=_str(data.get("error")),
        files=_files(data.get("files"), origin),
        outputs=outputs if isinstance(outputs, dict) else {},
        workflow_run_id=run_id,
        forms=forms,
    )


def to_form(data: dict[str, Any], *, workflow_run_id: str = "", token: str = "") -> FormRequest:
    """A form from any of Dify's shapes of it: ``human_input_required.data``, a
    ``workflow_paused`` reason, an ``extra_contents`` form definition (``GET /messages``), or the
    ``GET /form/human_input/{token}`` body (``user_actions``, no ids: pass the ``token``)."""
    defaults = data.get("resolved_default_values")
    defaults = defaults if isinstance(defaults, dict) else {}
    actions = data.get("actions")
    if not isinstance(actions, list):
        actions = data.get("user_actions")
    return FormRequest(
        token=_str(data.get("form_token")) or token,
        form_id=_str(data.get("form_id")),
        node_id=_str(data.get("node_id")),
        node_title=_str(data.get("node_title")),
        content=_str(data.get("form_content")),
        fields=tuple(
            _field(item, defaults)
            for item in _dicts(data.get("inputs"))
            if item.get("output_variable_name")
        ),
        actions=tuple(
            FormAction(
                _str(item.get("id")),
                _str(item.get("title")),
                _str(item.get("button_style")) or "default",
            )
            for item in _dicts(actions)
            if item.get("id")
        ),
        expires_at=_int(data.get("expiration_time")),
        workflow_run_id=workflow_run_id,
        display_in_ui=data.get("display_in_ui") is not False,
    )


def _field(item: dict[str, Any], defaults: dict[str, Any]) -> FormField:
    name = _str(item.get("output_variable_name"))
    default = item.get("default")
    constant = (
        default.get("value")
        if isinstance(default, dict) and default.get("type") == "constant"
        else ""
    )
    source = item.get("option_source")
    options = source.get("value") if isinstance(source, dict) else None
    limit = _int(item.get("number_limits"))
    return FormField(
        name=name,
        type=_str(item.get("type")),
        default=_str(defaults.get(name, constant)),
        options=_strs(options),
        file_types=_strs(item.get("allowed_file_types")),
        file_extensions=_strs(item.get("allowed_file_extensions")),
        upload_methods=_strs(item.get("allowed_file_upload_methods")),
        max_files=1 if item.get("type") == "file" else max(limit or 0, 0),
    )


def _dicts(raw: Any) -> list[dict[str, Any]]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


def _strs(raw: Any) -> tuple[str, ...]:
    return tuple(_str(item) for item in raw if item is not None) if isinstance(raw, list) else ()


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

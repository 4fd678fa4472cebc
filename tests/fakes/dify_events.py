"""Dify 1.13.2 event payloads for one generation turn, key for key as in the captures."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

Node = tuple[str, str, str]  # node_id, node_type, title
START: Node = ("start", "start", "Start")
ANSWER: Node = ("answer", "answer", "Answer")
END: Node = ("end", "end", "End")

# LLMUsage: every field, prices as decimal strings (dify-api.md §4.2).
DEFAULT_USAGE: dict[str, Any] = {
    "prompt_tokens": 212,
    "prompt_unit_price": "0.15",
    "prompt_price_unit": "0.000001",
    "prompt_price": "0.0000318",
    "completion_tokens": 9,
    "completion_unit_price": "0.6",
    "completion_price_unit": "0.000001",
    "completion_price": "0.0000054",
    "total_tokens": 221,
    "total_price": "0.0000372",
    "currency": "USD",
    "latency": 0.93,
    "time_to_first_token": 0.41,
    "time_to_generate": 0.52,
}


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Turn:
    """One generation: the ids every event of its stream repeats."""

    mode: str
    user: str
    end_user_id: str
    app_id: str
    query: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    dialogue_count: int = 1
    task_id: str = field(default_factory=new_id)
    message_id: str = field(default_factory=new_id)
    workflow_run_id: str = field(default_factory=new_id)
    workflow_id: str = field(default_factory=new_id)
    created_at: int = field(default_factory=lambda: int(time.time()))
    synthetic: bool = False  # §6.3 failure events: no conversation/message ids

    @property
    def workflow_backed(self) -> bool:
        return self.mode in ("advanced-chat", "workflow")


def envelope(turn: Turn, event: str) -> dict[str, Any]:
    """The leading keys of every event, in the converters' order."""
    if turn.mode == "workflow":
        return {"event": event, "workflow_run_id": turn.workflow_run_id, "task_id": turn.task_id}
    if turn.synthetic:
        return {"event": event, "task_id": turn.task_id}
    head: dict[str, Any] = {"event": event}
    if turn.mode != "completion":
        head["conversation_id"] = turn.conversation_id
    head |= {"message_id": turn.message_id, "created_at": turn.created_at, "task_id": turn.task_id}
    return head


def workflow_event(turn: Turn, event: str, data: dict[str, Any]) -> dict[str, Any]:
    head = envelope(turn, event)
    head.setdefault("workflow_run_id", turn.workflow_run_id)
    return head | {"data": data}


def sys_inputs(turn: Turn, *, finished: bool) -> dict[str, Any]:
    """``sys.*`` variables as the start node sees them (``node_finished`` adds the late ones)."""
    ids = {
        "sys.files": [],
        "sys.user_id": turn.user,
        "sys.app_id": turn.app_id,
        "sys.workflow_id": turn.workflow_id,
        "sys.workflow_run_id": turn.workflow_run_id,
    }
    if turn.mode == "workflow":
        return {**turn.inputs, **ids} | ({"sys.timestamp": turn.created_at} if finished else {})
    late = {"sys.conversation_id": turn.conversation_id} if finished else {}
    return ids | {"sys.query": turn.query} | late | {"sys.dialogue_count": turn.dialogue_count}


def workflow_started(turn: Turn) -> dict[str, Any]:
    data = {
        "id": turn.workflow_run_id,
        "workflow_id": turn.workflow_id,
        "inputs": sys_inputs(turn, finished=False),
        "created_at": turn.created_at,
        "reason": "initial",
    }
    return workflow_event(turn, "workflow_started", data)


def workflow_finished(
    turn: Turn,
    *,
    status: str = "succeeded",
    outputs: dict[str, Any] | None = None,
    error: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    data = {
        "id": turn.workflow_run_id,
        "workflow_id": turn.workflow_id,
        "status": status,
        "outputs": outputs if outputs is not None else {},
        "error": error,
        "elapsed_time": 0.07362,
        "total_tokens": 0,
        "total_steps": 2,
        "created_by": {"id": turn.end_user_id, "user": turn.user},
        "created_at": turn.created_at,
        "finished_at": int(time.time()),
        "exceptions_count": 0,
        "files": files or [],
    }
    return workflow_event(turn, "workflow_finished", data)


def _node_head(turn: Turn, exec_id: str, node: Node) -> dict[str, Any]:
    node_id, node_type, title = node
    return {
        "id": exec_id,
        "node_id": node_id,
        "node_type": node_type,
        "title": title,
        "index": 1,
        "predecessor_node_id": None,
    }


def node_started(turn: Turn, exec_id: str, node: Node) -> dict[str, Any]:
    data = _node_head(turn, exec_id, node) | {
        "inputs": None,
        "inputs_truncated": False,
        "created_at": turn.created_at,
        "extras": {},
        "iteration_id": None,
        "loop_id": None,
        "agent_strategy": None,
    }
    return workflow_event(turn, "node_started", data)


def node_finished(
    turn: Turn, exec_id: str, node: Node, *, inputs: dict[str, Any], outputs: dict[str, Any]
) -> dict[str, Any]:
    data = _node_head(turn, exec_id, node) | {
        "inputs": inputs,
        "inputs_truncated": False,
        "process_data": {},
        "process_data_truncated": False,
        "outputs": outputs,
        "outputs_truncated": False,
        "status": "succeeded",
        "error": None,
        "elapsed_time": 0.000278,
        "execution_metadata": None,
        "created_at": turn.created_at,
        "finished_at": int(time.time()),
        "files": [],
        "iteration_id": None,
        "loop_id": None,
    }
    return workflow_event(turn, "node_finished", data)


def text_delta(turn: Turn, text: str) -> dict[str, Any]:
    """The mode's answer delta: ``message``, ``agent_message`` or workflow ``text_chunk``."""
    if turn.mode == "workflow":
        data = {"text": text, "from_variable_selector": ["start", "query"]}
        return envelope(turn, "text_chunk") | {"data": data}
    if turn.mode == "agent-chat":
        return envelope(turn, "agent_message") | {"id": turn.message_id, "answer": text}
    selector = ["answer", "answer"] if turn.mode == "advanced-chat" else None
    return envelope(turn, "message") | {
        "id": turn.message_id,
        "answer": text,
        "from_variable_selector": selector,
    }


def message_replace(turn: Turn, answer: str) -> dict[str, Any]:
    if turn.mode == "workflow":
        return envelope(turn, "text_replace") | {"data": {"text": answer}}
    extra = {"reason": "output_moderation"} if turn.mode == "advanced-chat" else {}
    return envelope(turn, "message_replace") | {"answer": answer} | extra


def message_end(
    turn: Turn,
    *,
    files: list[dict[str, Any]] | None = None,
    retriever_resources: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return envelope(turn, "message_end") | {
        "id": turn.message_id,
        "metadata": metadata(retriever_resources, usage),
        # Chatflow lists the Answer node's files; Chatbot/Agent send their files as message_file.
        "files": (files or []) if turn.mode == "advanced-chat" else None,
    }


def metadata(
    retriever_resources: list[dict[str, Any]] | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "annotation_reply": None,
        "retriever_resources": retriever_resources or [],
        "usage": DEFAULT_USAGE | (usage or {}),
    }


def message_file(turn: Turn, given: dict[str, Any]) -> dict[str, Any]:
    file_id = str(given.get("id") or new_id())
    defaults = {
        "id": file_id,
        "type": "image",
        "belongs_to": "assistant",
        # Relative when FILES_URL is unset (dify-api.md §4.2): clients resolve it against the API.
        "url": f"/files/tools/{file_id}.png?timestamp={turn.created_at}&nonce=0f1e&sign=c2ln%3D",
    }
    return envelope(turn, "message_file") | defaults | given


def agent_thought(turn: Turn, given: dict[str, Any], position: int) -> dict[str, Any]:
    defaults = {
        "id": new_id(),
        "position": position,
        "thought": "",
        "observation": "",
        "tool": "",
        "tool_labels": {},
        "tool_input": "",
        "message_files": [],
    }
    return envelope(turn, "agent_thought") | defaults | given


def error_event(turn: Turn, *, status: int, code: str, message: str) -> dict[str, Any]:
    """In-stream error: the envelope without ``task_id`` (the converter builds it by hand)."""
    head = {k: v for k, v in envelope(turn, "error").items() if k != "task_id"}
    return head | {"code": code, "status": status, "message": message}


def blocking_body(turn: Turn, answer: str, **meta: Any) -> dict[str, Any]:
    """The blocking chat/completion body (turn3_blocking.response.json)."""
    body: dict[str, Any] = {
        "event": "message",
        "task_id": turn.task_id,
        "id": turn.message_id,
        "message_id": turn.message_id,
    }
    if turn.mode != "completion":
        body["conversation_id"] = turn.conversation_id
    return body | {
        "mode": turn.mode,
        "answer": answer,
        "metadata": metadata(**meta),
        "created_at": turn.created_at,
    }


def blocking_workflow_body(turn: Turn, outputs: dict[str, Any]) -> dict[str, Any]:
    """The blocking ``/workflows/run`` body (workflow_run_blocking.http)."""
    data = {
        "id": turn.workflow_run_id,
        "workflow_id": turn.workflow_id,
        "status": "succeeded",
        "outputs": outputs,
        "error": None,
        "elapsed_time": 0.071816,
        "total_tokens": 0,
        "total_steps": 2,
        "created_at": turn.created_at,
        "finished_at": int(time.time()),
    }
    return {"task_id": turn.task_id, "workflow_run_id": turn.workflow_run_id, "data": data}

"""Dify 1.14.1 payloads of paused, resumed and replayed runs, key for key as the hitl captures.

Live events keep the 1.13.2 envelope (dify_events); the state snapshot of
``GET /workflow/{id}/events`` puts ``task_id``/``workflow_run_id`` first and the message ids
after ``data``; a finished run is one ``workflow_finished`` built from the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes import dify_events as ev
from tests.fakes.dify_run_state import Form, NodeExec, Run

HUMAN_TYPE = "human-input"
NO_FILES = {"value_type": "array[file]", "value": []}  # a typed segment, as the snapshot shows it


def human_node(form: Form) -> ev.Node:
    return (form.node.node_id, HUMAN_TYPE, form.node.title)


def workflow_started(turn: ev.Turn, *, reason: str, created_at: int) -> dict[str, Any]:
    event = ev.workflow_started(turn)
    event["data"]["created_at"] = created_at
    event["data"]["reason"] = reason
    return event


def human_input_required(turn: ev.Turn, form: Form, *, template: bool = False) -> dict[str, Any]:
    data = form.definition()
    if template:  # the snapshot replays the node's unrendered form_content
        data["form_content"] = form.template
    return ev.workflow_event(turn, "human_input_required", data)


def pause_reason(form: Form, *, template: bool = False) -> dict[str, Any]:
    return {
        "TYPE": "human_input_required",
        "form_id": form.form_id,
        "form_content": form.template if template else form.content,
        "inputs": list(form.node.inputs),
        "actions": list(form.node.actions),
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "resolved_default_values": form.resolved_defaults,
        "form_token": form.token,
        "expiration_time": form.expiration_time,
    }


def paused_data(
    run: Run, *, outputs: dict[str, Any], template: bool = False, elapsed: float = 0.067607
) -> dict[str, Any]:
    waiting = [f for f in run.forms if f.status == "waiting"]
    return {
        "workflow_run_id": run.run_id,
        "paused_nodes": [f.node.node_id for f in waiting],
        "outputs": outputs,
        "reasons": [pause_reason(f, template=template) for f in waiting],
        "status": "paused",
        "created_at": run.turn.created_at,
        "elapsed_time": elapsed,
        "total_tokens": 0,
        "total_steps": run.total_steps,
    }


def workflow_paused(run: Run) -> dict[str, Any]:
    return ev.workflow_event(run.turn, "workflow_paused", paused_data(run, outputs={}))


def form_filled(turn: ev.Turn, form: Form) -> dict[str, Any]:
    return ev.workflow_event(turn, "human_input_form_filled", form.filled())


def form_timeout(turn: ev.Turn, form: Form) -> dict[str, Any]:
    data = {
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "expiration_time": form.expiration_time,
    }
    return ev.workflow_event(turn, "human_input_form_timeout", data)


def human_finished(turn: ev.Turn, form: Form, exec_id: str) -> dict[str, Any]:
    """The human node's ``node_finished`` after a submit (inputs, ``__action_*``) or a timeout."""
    if form.status == "timeout":
        outputs: dict[str, Any] = {"__action_id": "", "__action_value": ""}
        inputs: dict[str, Any] = {}
    else:
        inputs = dict(form.data)
        outputs = inputs | {
            "__action_id": form.action,
            "__action_value": form.action_title(),
            "__rendered_content": form.rendered(),
        }
    return ev.node_finished(turn, exec_id, human_node(form), inputs=inputs, outputs=outputs)


# ---- the state snapshot (include_state_snapshot=true) ------------------------------------------


def _snapshot(run: Run, event: str, body: dict[str, Any]) -> dict[str, Any]:
    turn = run.turn
    head: dict[str, Any] = {"event": event, "task_id": turn.task_id}
    if event != "message_replace":
        head["workflow_run_id"] = run.run_id
    frame = head | body
    if turn.mode == "advanced-chat":
        frame |= {
            "conversation_id": turn.conversation_id,
            "message_id": turn.message_id,
            "created_at": turn.created_at,
        }
    return frame


def _node_head(done: NodeExec) -> dict[str, Any]:
    node_id, node_type, title = done.node
    return {
        "id": done.exec_id,
        "node_id": node_id,
        "node_type": node_type,
        "title": title,
        "index": done.index,
        "predecessor_node_id": None,
        "inputs": None,
    }


def snapshot_events(run: Run, *, stored_answer: str) -> list[dict[str, Any]]:
    """What 1.14.1 replays before the live events: run start, the stored answer, every node,
    and for a paused run its forms (unrendered template) and the pause."""
    turn = run.turn
    inputs = ev.sys_inputs(turn, finished=turn.mode == "workflow")
    started = {
        "id": run.run_id,
        "workflow_id": turn.workflow_id,
        "inputs": inputs,
        "created_at": turn.created_at,
        "reason": "initial",
    }
    events = [_snapshot(run, "workflow_started", {"data": started})]
    if turn.mode == "advanced-chat":
        events.append(_snapshot(run, "message_replace", {"answer": stored_answer, "reason": ""}))
    for done in run.nodes:
        head = _node_head(done)
        node_started = head | {
            "created_at": done.created_at,
            "extras": {},
            "iteration_id": None,
            "loop_id": None,
        }
        events.append(_snapshot(run, "node_started", {"data": node_started}))
        if done.status != "running":
            events.append(_snapshot(run, "node_finished", {"data": _snapshot_finished(done)}))
    if run.status == "paused":
        events.extend(_snapshot_pause(run, stored_answer))
    return events


def _snapshot_finished(done: NodeExec) -> dict[str, Any]:
    return _node_head(done) | {
        "process_data": None,
        "outputs": None,
        "status": done.status,
        "error": None,
        "elapsed_time": done.elapsed,
        "execution_metadata": None,
        "created_at": done.created_at,
        "finished_at": done.finished_at or done.created_at,
        "files": [],
        "iteration_id": None,
        "loop_id": None,
    }


def _snapshot_pause(run: Run, stored_answer: str) -> list[dict[str, Any]]:
    events = []
    for form in run.forms:
        if form.status == "waiting":
            data = form.definition() | {"form_content": form.template}
            events.append(_snapshot(run, "human_input_required", {"data": data}))
    outputs: dict[str, Any] = {}
    if run.turn.mode == "advanced-chat":
        outputs = {"answer": stored_answer, "files": NO_FILES}
    data = paused_data(run, outputs=outputs, template=True, elapsed=0.0)
    events.append(_snapshot(run, "workflow_paused", {"data": data}))
    return events


def finished_from_db(run: Run) -> bytes:
    """A finished run on the events endpoint: one frame, ``json.dumps`` spacing, the run id as
    ``task_id`` and no message ids (hitl_*_events_after_finish)."""
    finished = run.finished or {}
    data = dict(finished.get("data") or {})
    data["created_at"] = run.turn.created_at
    data["finished_at"] = run.finished_at
    frame = {
        "event": "workflow_finished",
        "task_id": run.run_id,
        "workflow_run_id": run.run_id,
        "data": data,
    }
    return b"data: " + json.dumps(frame).encode() + b"\n\n"


def run_detail(run: Run) -> dict[str, Any]:
    """``GET /workflows/run/{id}`` (hitl_workflow_run_detail_*): inputs as a JSON string."""
    inputs = ev.sys_inputs(run.turn, finished=True)
    return {
        "id": run.run_id,
        "workflow_id": run.turn.workflow_id,
        "status": run.status,
        "inputs": json.dumps(inputs),
        "outputs": run.outputs if run.status != "paused" else {},
        "error": run.error,
        "total_steps": run.total_steps,
        "total_tokens": 0,
        "created_at": run.turn.created_at,
        "finished_at": run.finished_at or None,
        "elapsed_time": 0.04002 if run.finished_at else 0.0,
    }


# ---- blocking bodies of a paused run ---------------------------------------------------------


def blocking_paused(run: Run) -> dict[str, Any]:
    """200 at once with the pause (hitl_chatflow_pause_blocking / hitl_workflow_pause_blocking)."""
    turn = run.turn
    reasons = [pause_reason(f) for f in run.forms if f.status == "waiting"]
    paused_nodes = [f.node.node_id for f in run.forms if f.status == "waiting"]
    if turn.mode == "workflow":
        data = {
            "id": run.run_id,
            "workflow_id": turn.workflow_id,
            "status": "paused",
            "outputs": {},
            "error": None,
            "elapsed_time": 0.048369,
            "total_tokens": 0,
            "total_steps": run.total_steps,
            "created_at": turn.created_at,
            "finished_at": None,
            "paused_nodes": paused_nodes,
            "reasons": reasons,
        }
        return {"task_id": turn.task_id, "workflow_run_id": run.run_id, "data": data}
    metadata = {"annotation_reply": None, "retriever_resources": [], "usage": None}
    common = {
        "mode": turn.mode,
        "conversation_id": turn.conversation_id,
        "message_id": turn.message_id,
        "workflow_run_id": run.run_id,
        "answer": run.text,
        "metadata": metadata,
        "created_at": turn.created_at,
    }
    inner = (
        {"id": turn.message_id}
        | common
        | {
            "paused_nodes": paused_nodes,
            "reasons": reasons,
            "status": "paused",
            "elapsed_time": 0.096357,
            "total_tokens": 0,
            "total_steps": run.total_steps,
        }
    )
    return {
        "event": "workflow_paused",
        "task_id": turn.task_id,
        "id": turn.message_id,
        "message_id": turn.message_id,
        "conversation_id": turn.conversation_id,
        "mode": turn.mode,
        "answer": run.text,
        "metadata": metadata,
        "created_at": turn.created_at,
        "workflow_run_id": run.run_id,
        "data": inner,
    }


# ---- newer events: separated reasoning, text to speech, New Agent ------------------------------


def reasoning_chunk(turn: ev.Turn, text: str, *, final: bool = False) -> dict[str, Any]:
    """An LLM node's separated reasoning (``message_id`` is null in workflow apps)."""
    data = {
        "message_id": None if turn.mode == "workflow" else turn.message_id,
        "reasoning": text,
        "node_id": "llm",
        "is_final": final,
    }
    return ev.workflow_event(turn, "reasoning_chunk", data)


def tts_message(turn: ev.Turn, audio: str) -> dict[str, Any]:
    """A base64 MP3 chunk (TTS auto-play); ``tts_message_end`` carries ``audio: ""``."""
    name = "tts_message" if audio else "tts_message_end"
    return ev.envelope(turn, name) | {"audio": audio}


def agent_delta(turn: ev.Turn, text: str) -> dict[str, Any]:
    return ev.envelope(turn, "agent_message") | {"id": turn.message_id, "answer": text}


def agent_closing(turn: ev.Turn, answer: str) -> dict[str, Any]:
    """New Agent (``mode: agent``): one ``message`` with the whole answer closes the deltas."""
    return ev.envelope(turn, "message") | {
        "id": turn.message_id,
        "answer": answer,
        "from_variable_selector": None,
    }


def now() -> int:
    return int(time.time())

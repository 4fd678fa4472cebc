"""What the fake Dify keeps about a workflow run: its live event channel, nodes, forms, answer."""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import dify_events as ev
from tests.fakes.dify_behaviours import HumanFlow, HumanInput

_TEMPLATE = re.compile(r"\{\{#([A-Za-z0-9_$.]+)#\}\}")
_TOKEN_ALPHABET = string.ascii_letters + string.digits


def render(template: str, variables: dict[str, str]) -> str:
    """Substitute ``{{#node.var#}}`` by name; unknown names (``$output.x``) stay as they are."""
    return _TEMPLATE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def new_form_token() -> str:
    """22 characters of base62, the shape of a real 1.14.1 form token."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(22))


def new_form_id() -> str:
    """1.14.1 form ids are UUIDv7-like (``01a2495e-fe10-78d0-…``): time-ordered."""
    raw = uuid.uuid4().hex
    stamp = f"{int(time.time() * 1000):012x}"[-12:]
    return f"{stamp[:8]}-{stamp[8:]}-7{raw[1:4]}-{raw[4:8]}-{raw[8:20]}"


@dataclass(eq=False)
class Form:
    """One Human Input form of a run: what the node asked, and what became of it."""

    node: HumanInput
    run_id: str
    template: str  # the node's form_content, variables not substituted (snapshots show this)
    content: str  # variables substituted, ``{{#$output.x#}}`` kept
    expiration_time: int
    app_key: str
    resolved_defaults: dict[str, str] = field(default_factory=dict)
    form_id: str = field(default_factory=new_form_id)
    token: str | None = None
    status: str = "waiting"  # waiting | submitted | timeout
    action: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    submitted_by: str = ""

    def definition(self) -> dict[str, Any]:
        """The form as ``human_input_required.data`` and ``extra_contents`` list it."""
        return {
            "form_id": self.form_id,
            "node_id": self.node.node_id,
            "node_title": self.node.title,
            "form_content": self.content,
            "inputs": list(self.node.inputs),
            "actions": list(self.node.actions),
            "display_in_ui": self.node.display_in_ui,
            "form_token": self.token,
            "resolved_default_values": self.resolved_defaults,
            "expiration_time": self.expiration_time,
        }

    def action_title(self) -> str:
        return next((a["title"] for a in self.node.actions if a["id"] == self.action), self.action)

    def rendered(self) -> str:
        """The form text with the submitted values in place of ``{{#$output.x#}}``."""
        values = {f"$output.{k}": _shown(self.node, k, v) for k, v in self.data.items()}
        return render(self.content, values)

    def filled(self) -> dict[str, Any]:
        """``human_input_form_filled.data`` (1.14.1: no ``submitted_data``)."""
        return {
            "node_id": self.node.node_id,
            "node_title": self.node.title,
            "rendered_content": self.rendered(),
            "action_id": self.action,
            "action_text": self.action_title(),
        }


def _shown(node: HumanInput, name: str, value: Any) -> str:
    """How Dify writes a submitted value into the form text: files as ``[file]``/``[N files]``."""
    kind = next((i["type"] for i in node.inputs if i["output_variable_name"] == name), "")
    if kind == "file":
        return "[file]"
    if kind == "file-list":
        return f"[{len(value) if isinstance(value, list) else 0} files]"
    return "" if value is None else str(value)


@dataclass(eq=False)
class NodeExec:
    """One executed node, as the state snapshot replays it."""

    exec_id: str
    node: ev.Node
    index: int
    created_at: int
    status: str = "running"  # running | succeeded | paused
    elapsed: float = 0.000101
    finished_at: int = 0


@dataclass(eq=False)
class Run:
    """A workflow run: live events go to whoever subscribed at that moment, and nobody else."""

    turn: ev.Turn
    flow: HumanFlow
    app_key: str
    status: str = "running"  # running | paused | succeeded | stopped | failed
    text: str = ""  # the answer streamed so far
    saved: str = ""  # the message row's answer: written at a pause and at the end
    variables: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeExec] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    step: int = 0  # the human node the run is at (or will reach next)
    subscribers: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)
    stop_requested: bool = False
    stopped_by_other: bool = False
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    held: bool = False
    release_on_reattach: bool = False
    finished: dict[str, Any] | None = None  # the stored workflow_finished payload
    finished_at: int = 0
    total_steps: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    streaming: bool = True  # blocking runs never mark their message paused

    @property
    def run_id(self) -> str:
        return self.turn.workflow_run_id

    @property
    def pending(self) -> Form | None:
        return next((f for f in self.forms if f.status == "waiting"), None)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        if queue in self.subscribers:
            self.subscribers.remove(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    def node(self, node: ev.Node, created_at: int) -> NodeExec:
        """Start a node (or, for a paused human node, find its execution again)."""
        for done in self.nodes:
            if done.node == node and done.status == "paused":
                done.status = "running"
                return done
        started = NodeExec(ev.new_id(), node, len(self.nodes) + 1, created_at)
        self.nodes.append(started)
        self.total_steps += 1
        return started

"""Scripted responses for FakeDify: what the next request to a path gets instead of the default."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

AnswerEnd = Literal["auto", "none", "message_end", "workflow_finished", "workflow_first"]


class Turnstile:
    """Paces a streamed answer from the test instead of the clock: the first chunk goes at once,
    chunk ``i`` only after the test has called ``allow`` ``i`` times. What a test then observes
    (every stage of a growing answer) does not depend on how busy the machine is."""

    def __init__(self) -> None:
        self.allowed = 1
        self._moved = asyncio.Event()

    def allow(self) -> None:
        self.allowed += 1
        self._moved.set()

    async def until(self, index: int, interrupt: asyncio.Event) -> bool:
        """Until chunk ``index`` may go (True), or the stream is stopped or closed (False)."""
        while self.allowed <= index:
            if interrupt.is_set():
                return False
            self._moved.clear()
            waits = [
                asyncio.ensure_future(self._moved.wait()),
                asyncio.ensure_future(interrupt.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        return True


@dataclass(frozen=True)
class Answer:
    """A successful answer, streamed (or blocking) in the shape of the app's mode.

    ``end``: ``auto`` = the mode's real closing events (Chatflow: ``message_end`` then
    ``workflow_finished``, as 1.13.2 sends them); ``none`` = clean EOF right after the chunks;
    ``message_end`` / ``workflow_finished`` = only that one; ``workflow_first`` = the pre-2026
    order (``workflow_finished`` then ``message_end``). ``progress=False`` drops node events.
    ``delay`` is the pause after each chunk, so also before the closing events: a one-chunk answer
    still takes ``delay`` to finish (``None`` = ``FakeDify.chunk_delay``). Token pacing for
    benchmarks: ``first_delay`` before the first chunk, ``delays[i]`` after chunk ``i`` instead.
    """

    chunks: list[str] = field(default_factory=lambda: ["Hello", ", world", "!"])
    delay: float | None = None
    end: AnswerEnd = "auto"
    replace: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    retriever_resources: list[dict[str, Any]] = field(default_factory=list)
    agent_thoughts: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    conversation_id: str | None = None
    progress: bool = True
    first_delay: float = 0.0
    delays: tuple[float, ...] = ()
    # Newer events: ``reasoning`` deltas stream as ``reasoning_chunk`` before the answer (an LLM
    # node with separated reasoning); ``tts`` audio chunks follow the text chunks as
    # ``tts_message``, and ``tts_message_end`` trails the closing events.
    reasoning: tuple[str, ...] = ()
    tts: tuple[str, ...] = ()
    turnstile: Turnstile | None = None  # chunks released by the test, not by ``delay``

    @property
    def text(self) -> str:
        """The final answer: the chunks, or the moderation replacement."""
        return self.replace if self.replace is not None else "".join(self.chunks)


@dataclass(frozen=True)
class HttpError:
    """A JSON error before any stream (``{"code","message","status"}``)."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SilentPing:
    """200 + one bare ``event: ping`` then silence: 1.13.2 Chatflow with an unknown conversation."""

    hold: float = 300.0


@dataclass(frozen=True)
class Cut:
    """``after`` chunks, then the connection dies (abrupt: no chunked terminator) or ends."""

    after: int = 1
    abrupt: bool = True
    chunks: list[str] | None = None  # None = the request's default echo chunks, cycled


@dataclass(frozen=True)
class StreamError:
    """An in-stream ``error`` event (no ``task_id``, like Dify) after ``after`` chunks, then EOF."""

    after: int = 1
    status: int = 400
    code: str = "completion_request_error"
    message: str = "[openai] Rate Limit Error"
    chunks: list[str] | None = None


@dataclass(frozen=True)
class FailedRun:
    """Chatflow synthetic failure (dify-api.md §6.3): workflow_started -> failed workflow_finished.

    Without ids the events lack conversation_id/message_id and ``task_id == workflow_run_id``.
    In blocking mode this is 400 ``invalid_param`` "Run failed: <error>" (node_failure_blocking).
    """

    error: str = ""
    with_ids: bool = False


@dataclass(frozen=True)
class Replay:
    """``<name>.sse.raw`` byte for byte with the status/headers of ``<name>.meta.json``."""

    name: str
    timing: bool = False
    speed: float = 1.0


@dataclass(frozen=True)
class ReplayHTTP:
    """A ``<name>.http`` capture: status, headers (minus hop-by-hop) and body exactly."""

    name: str
    hold: float = 300.0  # a ping-only SSE body then stays open, like SilentPing


@dataclass(frozen=True)
class Stall:
    """Accept the request and send nothing, not even headers, for ``seconds``; then answer."""

    seconds: float


def paragraph(name: str, *, default: str = "", selector: tuple[str, ...] = ()) -> dict[str, Any]:
    """A paragraph input as 1.14.1 sends it (``default`` constant, or a variable ``selector``)."""
    kind = "variable" if selector else "constant"
    source = {"type": kind, "selector": list(selector), "value": "" if selector else default}
    return {"type": "paragraph", "output_variable_name": name, "default": source}


def select(name: str, options: tuple[str, ...]) -> dict[str, Any]:
    source = {"type": "constant", "selector": [], "value": list(options)}
    return {"type": "select", "output_variable_name": name, "option_source": source}


def file_input(
    name: str,
    *,
    types: tuple[str, ...] = ("document",),
    extensions: tuple[str, ...] = (),
    methods: tuple[str, ...] = ("local_file", "remote_url"),
    limit: int | None = None,
) -> dict[str, Any]:
    """A ``file`` input, or a ``file-list`` one when ``limit`` (``number_limits``) is given."""
    item: dict[str, Any] = {
        "type": "file" if limit is None else "file-list",
        "output_variable_name": name,
        "allowed_file_types": list(types),
        "allowed_file_extensions": list(extensions),
        "allowed_file_upload_methods": list(methods),
    }
    if limit is not None:
        item["number_limits"] = limit
    return item


APPROVE = {"id": "approve", "title": "Approve", "button_style": "primary"}
REJECT = {"id": "reject", "title": "Reject", "button_style": "default"}


@dataclass(frozen=True)
class HumanInput:
    """A Human Input node (WebApp delivery) and the text its branch streams once answered.

    Defaults are the captured node ``human`` of apps A and B (dify-captures README, "Human
    input"). ``content`` and ``after`` are templates: ``{{#sys.query#}}``, ``{{#start.<input>#}}``,
    ``{{#<node>.<output>#}}`` (``__action_id``, ``__action_value``, an input's name) are
    substituted; ``{{#$output.<input>#}}`` stays in the form until it is submitted. ``timeout``
    is in seconds (Dify only offers hours and days; tests want less). ``webapp=False`` is an
    Email/Console-only node: its form has no token and the Service API cannot answer it.
    ``on_timeout`` is what the node's timeout branch streams. ``hold_after``: after that many
    chunks of ``after`` the resumed run waits until ``FakeDify.release(run_id)``.
    """

    node_id: str = "human"
    title: str = "Review"
    content: str = "Please review: {{#sys.query#}}\n\nNote: {{#$output.note#}}"
    inputs: tuple[dict[str, Any], ...] = (paragraph("note"),)
    actions: tuple[dict[str, Any], ...] = (APPROVE, REJECT)
    timeout: float = 3600.0
    webapp: bool = True
    display_in_ui: bool = True
    after: tuple[str, ...] = (
        "after form: action=",
        "{{#human.__action_id#}}",
        " note=",
        "{{#human.note#}}",
    )
    on_timeout: tuple[str, ...] = ("timed out",)
    hold_after: int | None = None


@dataclass(frozen=True)
class HumanFlow:
    """A Chatflow or Workflow run that pauses at each Human Input node in ``steps``.

    The run streams ``before`` (Chatflow: Answer1 ``before form: {{#sys.query#}}``), then pauses
    at the first node: ``human_input_required``, ``workflow_paused``, and the HTTP body ends
    ``FakeDify.close_delay`` later. A submit resumes it in the background (after
    ``FakeDify.resume_delay``): ``GET /workflow/{run_id}/events`` shows the rest. ``outputs`` are
    a Workflow app's End outputs (templates); its ``after`` chunks stream as ``text_chunk``.
    Set as ``FakeDify(flow=...)`` for every message, or ``enqueue`` it for one.
    """

    before: tuple[str, ...] = ("before form: ", "{{#sys.query#}}")
    steps: tuple[HumanInput, ...] = (HumanInput(),)
    outputs: tuple[tuple[str, str], ...] = (
        ("action", "{{#human.__action_id#}}"),
        ("note", "{{#human.note#}}"),
        ("query", "{{#sys.query#}}"),
    )

    @classmethod
    def captured_workflow(cls) -> HumanFlow:
        """App B: Start(query) -> Human Input -> End(action, note, query), streamed by the End."""
        content = "Please review: {{#start.query#}}\n\nNote: {{#$output.note#}}"
        after = ("{{#human.__action_id#}}", "\n", "{{#human.note#}}", "\n", "{{#start.query#}}")
        outputs = (
            ("action", "{{#human.__action_id#}}"),
            ("note", "{{#human.note#}}"),
            ("query", "{{#start.query#}}"),
        )
        node = HumanInput(content=content, after=after)
        return cls(before=(), steps=(node,), outputs=outputs)


RunWait = Literal["reattach", "release", "none"]


@dataclass(frozen=True)
class CutRun:
    """A Chatflow answer whose connection drops after ``after`` chunks while its run goes on.

    Dify runs a Chatflow in a worker and relays it, so a dropped client leaves the run going; a
    client reattaches with ``GET /workflow/{run_id}/events?include_state_snapshot=true``.
    ``until``: the run then waits for that reattach (``reattach``), for
    ``FakeDify.release(run_id)`` (``release``), or goes straight on (``none``, the real race).
    ``chunks``: the whole answer (None = the echo chunks of the query).
    """

    after: int = 1
    chunks: tuple[str, ...] | None = None
    until: RunWait = "reattach"


Behaviour = (
    Answer
    | HttpError
    | SilentPing
    | Cut
    | StreamError
    | FailedRun
    | Replay
    | ReplayHTTP
    | Stall
    | HumanFlow
    | CutRun
)
# Behaviours that need a generation turn (ids, conversation): only on the generate routes.
TURN_BEHAVIOURS = (Answer, Cut, StreamError, FailedRun, HumanFlow, CutRun)

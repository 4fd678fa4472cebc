"""Workflow runs of the fake Dify that live apart from any HTTP response, like Dify's workers.

A run publishes its events to whoever is subscribed at that moment (Dify's Redis pub/sub): the
generating request subscribes before the run starts, ``GET /workflow/{id}/events`` subscribes
when it opens, and what is published in between is lost. A run pauses at Human Input nodes
(``HumanFlow``), resumes when its form is submitted or times out, and keeps going when its
client drops (``CutRun``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tests.fakes import dify_events as ev
from tests.fakes import dify_human_events as hev
from tests.fakes.dify_behaviours import CutRun, HumanFlow, HumanInput
from tests.fakes.dify_run_state import Form, NodeExec, Run, new_form_token, render
from tests.fakes.dify_state import StoredMessage
from tests.fakes.dify_stream import SseStream, wait_event

if TYPE_CHECKING:
    from tests.fakes.dify import FakeDify

TERMINAL = frozenset({"workflow_finished", "workflow_paused"})
CLOSED: dict[str, Any] = {"event": "__closed__"}  # wakes relays when the fake shuts down
ABORTED = "Aborted: User requested stop"
ANSWER1: ev.Node = ("answer1", "answer", "Answer1")


def is_delta(event: dict[str, Any]) -> bool:
    return event.get("event") in ("message", "text_chunk", "agent_message")


class RunEngine:
    """Starts, pauses, resumes and stops the fake's runs; owns their background tasks."""

    def __init__(self, fake: FakeDify) -> None:
        self.fake = fake
        self.runs: dict[str, Run] = {}
        self.messages: dict[str, StoredMessage] = {}  # run id -> its Chatflow message
        self.forms: dict[str, Form] = {}  # form token -> form (WebApp delivery only)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ----------------------------------------------------------------------

    def create(
        self,
        turn: ev.Turn,
        flow: HumanFlow,
        *,
        app_key: str,
        message: StoredMessage | None,
        streaming: bool = True,
    ) -> Run:
        if not turn.workflow_backed:
            raise TypeError(f"only Chatflow and Workflow runs pause or outlive a client: {turn}")
        run = Run(turn=turn, flow=flow, app_key=app_key, streaming=streaming)
        run.variables = {"sys.query": turn.query} | {
            f"start.{k}": str(v) for k, v in turn.inputs.items()
        }
        self.runs[run.run_id] = run
        if message is not None:
            self.messages[run.run_id] = message
        return run

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for run in self.runs.values():
            run.gate.set()
            run.publish(CLOSED)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def by_task(self, task_id: str) -> Run | None:
        return next((r for r in self.runs.values() if r.turn.task_id == task_id), None)

    def now(self) -> int:
        return int(self.fake.clock())

    # ---- the first segment: start to the first pause (or the end) ------------------------

    async def begin(self, run: Run, *, cut: CutRun | None = None) -> None:
        turn = run.turn
        self._emit(run, hev.workflow_started(turn, reason="initial", created_at=turn.created_at))
        start = run.node(ev.START, turn.created_at)
        self._emit(run, ev.node_started(turn, start.exec_id, ev.START))
        chunks = list(cut.chunks or self.fake.echo(turn.query)) if cut else run.flow.before
        if cut is not None:
            run.release_on_reattach = cut.until == "reattach"
        for index, chunk in enumerate(chunks):
            if cut is not None and index == cut.after and cut.until != "none":
                await self._hold(run)
            if not await self._delta(run, render(chunk, run.variables)):
                return
        self._finish_node(run, start, inputs={}, outputs={})
        if turn.mode == "advanced-chat" and chunks:
            answer1 = run.node(ANSWER1, turn.created_at)
            self._emit(run, ev.node_started(turn, answer1.exec_id, ANSWER1))
            self._finish_node(run, answer1, inputs={}, outputs={"answer": run.text, "files": []})
        await self._next(run)

    async def _next(self, run: Run) -> None:
        """After a node: the next Human Input pauses the run, or the run ends."""
        steps = run.flow.steps
        if run.step < len(steps):
            self._pause_at(run, steps[run.step])
        else:
            self._end(run)

    def _pause_at(self, run: Run, node: HumanInput) -> None:
        turn = run.turn
        created = self.now()
        form = Form(
            node=node,
            run_id=run.run_id,
            template=node.content,
            content=render(node.content, run.variables),
            expiration_time=int(created + node.timeout),
            app_key=run.app_key,
            resolved_defaults=_resolved_defaults(node, run.variables),
            token=new_form_token() if node.webapp else None,
        )
        run.forms.append(form)
        if form.token:
            self.forms[form.token] = form
        human = run.node(hev.human_node(form), turn.created_at)
        self._emit(run, ev.node_started(turn, human.exec_id, hev.human_node(form)))
        self._emit(run, hev.human_input_required(turn, form))
        human.status, human.elapsed = "paused", 0.014033
        run.status, run.saved = "paused", run.text
        self._sync_message(run)
        self._emit(run, hev.workflow_paused(run))

    def _end(self, run: Run) -> None:
        turn = run.turn
        if turn.mode == "workflow" and run.flow.steps:
            end = run.node(ev.END, turn.created_at)
            self._emit(run, ev.node_started(turn, end.exec_id, ev.END))
            outputs = self._outputs(run)
            self._finish_node(run, end, inputs=outputs, outputs=outputs)
        if run.stopped_by_other:
            return self._finish(run, "failed", error=ABORTED)
        if turn.mode == "advanced-chat":
            self._emit(run, ev.message_end(turn))
        self._finish(run, "succeeded")

    def _outputs(self, run: Run) -> dict[str, Any]:
        if run.turn.mode == "workflow":
            if not run.flow.steps:
                return {"text": run.text}
            return {name: render(value, run.variables) for name, value in run.flow.outputs}
        return {"answer": run.text, "files": []}

    def _finish(self, run: Run, status: str, *, error: str | None = None) -> None:
        run.status, run.error, run.outputs = status, error, self._outputs(run)
        run.finished_at = self.now()
        run.saved = run.text
        finished = ev.workflow_finished(run.turn, status=status, outputs=run.outputs, error=error)
        finished["data"]["total_steps"] = run.total_steps
        run.finished = finished
        self._sync_message(run)
        self._emit(run, finished)

    # ---- resuming --------------------------------------------------------------------------

    def submit(self, form: Form, *, action: str, data: dict[str, Any], user: str) -> None:
        form.status, form.action, form.data, form.submitted_by = "submitted", action, data, user
        self._sync_message(self.runs[form.run_id])
        self.spawn(self._resume_later(self.runs[form.run_id]))
        self.fake.notify()

    def expire_due(self) -> list[Form]:
        """What celery beat does: forms past their expiry time out, and their runs go on down
        the node's timeout branch."""
        due = []
        for run in self.runs.values():
            form = run.pending
            if run.status == "paused" and form is not None and form.expiration_time <= self.now():
                form.status = "timeout"
                due.append(form)
                self.spawn(self._resume_later(run))
        return due

    async def _resume_later(self, run: Run) -> None:
        # The resume is a celery task: 1.14.1 picked it up 35-80 ms after the submit returned.
        await wait_event(self.fake.closing, self.fake.resume_delay)
        if self.fake.hold_resumes:  # tests decide when the worker picks it up: release(run_id)
            await self._hold(run)
        await self.resume(run)

    async def resume(self, run: Run) -> None:
        turn = run.turn
        form = run.forms[-1]
        run.status = "running"
        self._emit(run, hev.workflow_started(turn, reason="resumption", created_at=self.now()))
        if run.stop_requested:  # a stop while paused lands now (hitl_*_after_stop_and_submit)
            return self._finish(run, "stopped", error=ABORTED)
        human = run.node(hev.human_node(form), turn.created_at)
        self._emit(run, ev.node_started(turn, human.exec_id, hev.human_node(form)))
        timed_out = form.status == "timeout"
        if timed_out:
            self._emit(run, hev.form_timeout(turn, form))
        else:
            self._emit(run, hev.form_filled(turn, form))
            run.variables |= _node_outputs(form)
        chunks = form.node.on_timeout if timed_out else form.node.after
        before = len(run.text)
        for index, chunk in enumerate(chunks):
            if index == form.node.hold_after:
                await self._hold(run)
            if not await self._delta(run, render(chunk, run.variables)):
                return
        human.status, human.finished_at = "succeeded", self.now()
        self._emit(run, hev.human_finished(turn, form, human.exec_id))
        run.step += 1
        if turn.mode == "advanced-chat":  # the Answer node after the form (Answer2 in app A)
            name = f"answer{run.step + 1}"
            node: ev.Node = (name, "answer", name.capitalize())
            answer = run.node(node, turn.created_at)
            self._emit(run, ev.node_started(turn, answer.exec_id, node))
            segment = {"answer": run.text[before:], "files": []}
            self._finish_node(run, answer, inputs={}, outputs=segment)
        await self._next(run)

    # ---- stop, holds ---------------------------------------------------------------------

    def stop(self, run: Run, *, user: str) -> None:
        """A stop by the run's user halts a running run at once and a paused one when it
        resumes; another user's stop lets the run finish, then fails it (1.13.2 captures)."""
        if user != run.turn.user and run.turn.mode != "workflow":
            run.stopped_by_other = True
            return
        run.stop_requested = True
        run.gate.set()
        self.fake.notify()

    def release(self, run: Run) -> None:
        run.gate.set()

    async def _hold(self, run: Run) -> None:
        run.held = True
        self.fake.notify()
        try:
            await run.gate.wait()
        finally:
            run.held = False
            run.gate.clear()

    # ---- emitting --------------------------------------------------------------------------

    def _emit(self, run: Run, event: dict[str, Any]) -> None:
        run.publish(event)
        self.fake.notify()

    async def _delta(self, run: Run, text: str) -> bool:
        """One answer chunk; False once the run was stopped (the stop epilogue is sent)."""
        if run.stop_requested:
            self._finish(run, "stopped", error="Stopped by user.")
            return False
        self._emit(run, ev.text_delta(run.turn, text))
        run.text += text
        if self.fake.chunk_delay > 0:
            await wait_event(run.gate, self.fake.chunk_delay)
        return True

    def _finish_node(
        self, run: Run, done: NodeExec, *, inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        done.status, done.finished_at = "succeeded", self.now()
        event = ev.node_finished(run.turn, done.exec_id, done.node, inputs=inputs, outputs=outputs)
        self._emit(run, event)

    def _sync_message(self, run: Run) -> None:
        """The Chatflow message row as ``GET /messages`` shows it (status, answer, forms)."""
        message = self.messages.get(run.run_id)
        if message is None:
            return
        if run.streaming:  # a blocking request's message stays "normal" and empty while paused
            message.answer = run.saved
            message.status = "paused" if run.status == "paused" else "normal"
        elif run.status != "paused":
            message.answer = run.saved
        if run.status == "stopped" and run.error == ABORTED:
            message.status, message.error = "error", f"Run failed: {ABORTED}"
        message.extra_contents = [_extra_content(run, form) for form in run.forms]


def _extra_content(run: Run, form: Form) -> dict[str, Any]:
    submitted = form.status == "submitted"
    return {
        "workflow_run_id": run.run_id,
        "submitted": submitted,
        "form_definition": None if submitted else form.definition(),
        "form_submission_data": form.filled() if submitted else None,
        "type": "human_input",
    }


def _node_outputs(form: Form) -> dict[str, str]:
    node = form.node.node_id
    values = {f"{node}.{name}": _as_text(value) for name, value in form.data.items()}
    return values | {
        f"{node}.__action_id": form.action,
        f"{node}.__action_value": form.action_title(),
    }


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _resolved_defaults(node: HumanInput, variables: dict[str, str]) -> dict[str, str]:
    """Variable defaults resolved now; constant ones are not listed (1.14.1 sends ``{}``)."""
    resolved = {}
    for item in node.inputs:
        default = item.get("default") or {}
        if default.get("type") == "variable":
            key = ".".join(default.get("selector") or ())
            if key in variables:
                resolved[item["output_variable_name"]] = variables[key]
    return resolved


# ---- relaying a run to an HTTP response ----------------------------------------------------


async def relay(
    stream: SseStream,
    queue: asyncio.Queue[dict[str, Any]],
    *,
    stop_at_terminal: bool,
    close_delay: float,
    idle: float,
    cut_after: int | None = None,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Forward a run's live events, pinging through silences, until a terminal event (then the
    body ends ``close_delay`` later, as the 1.14.1 relay's one-second poll does) or forever."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    deltas = 0
    if on_subscribed is not None:
        on_subscribed()
    pings = stream.ping_interval > 0
    while True:
        left = idle - (loop.time() - last)
        wait = min(stream.ping_interval, left) if pings else left
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                event = await queue.get()
        except TimeoutError:
            if loop.time() - last >= idle:
                return
            await stream.ping()
            continue
        if event is CLOSED:
            return
        last = loop.time()
        await stream.send(event)
        deltas += is_delta(event)
        if cut_after is not None and deltas >= cut_after:
            stream.abort()  # the client loses the connection; the run does not notice
            return
        if stop_at_terminal and event.get("event") in TERMINAL:
            await stream.pause(close_delay, pings=False)
            return


def clock() -> float:
    return time.time()

"""The fake Dify's generating endpoints (chat, completion, workflow run) and their stop routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from tests.fakes import dify_events as ev
from tests.fakes.dify_behaviours import (
    Answer,
    Behaviour,
    Cut,
    CutRun,
    FailedRun,
    HumanFlow,
    StreamError,
)
from tests.fakes.dify_payloads import (
    ChatRequestPayload,
    CompletionRequestPayload,
    WorkflowRunPayload,
    form_variables,
    missing_input,
    validation_message,
)
from tests.fakes.dify_run_routes import serve_generation
from tests.fakes.dify_state import (
    RECORDED,
    SCRIPT,
    StoredConversation,
    StoredMessage,
    message_file,
)
from tests.fakes.dify_stream import (
    Generation,
    SseStream,
    run_answer,
    run_cut,
    run_failed,
    run_silent,
    run_stream_error,
    wait_event,
)
from tests.fakes.dify_wire import (
    blocking_response,
    error_response,
    json_response,
    not_exists_message,
)

if TYPE_CHECKING:
    from tests.fakes.dify import FakeDify

CHAT_MODES = frozenset({"chat", "agent-chat", "advanced-chat", "agent"})
GENERATE_PATHS = frozenset({"/chat-messages", "/completion-messages", "/workflows/run"})
ROUTE_MODES = {"/completion-messages": "completion", "/workflows/run": "workflow"}
MODE_ERRORS = {
    "/chat-messages": (
        "not_chat_app",
        "Please check if your app mode matches the right API route.",
    ),
    "/completion-messages": (
        "not_completion_app",
        "Please check if your Completion app mode matches the right API route.",
    ),
    "/workflows/run": (
        "not_workflow_app",
        "Please check if your Workflow app mode matches the right API route.",
    ),
}
BAD_JSON = "Invalid JSON payload received or JSON payload is empty."
# 1.13.2 releases a Chatflow's worker after 300 s of silence (err_unknown_conversation.http).
SILENT_HOLD = 300.0


def add_routes(app: web.Application, fake: FakeDify) -> None:
    routes = GenerateRoutes(fake)
    for path in GENERATE_PATHS:
        app.router.add_post(f"/v1{path}", routes.generate)
    app.router.add_post("/v1/chat-messages/{task_id}/stop", routes.stop)
    app.router.add_post("/v1/completion-messages/{task_id}/stop", routes.stop)
    app.router.add_post("/v1/workflows/tasks/{task_id}/stop", routes.stop)


def echo_chunks(text: str) -> list[str]:
    """The captured echo app streams its static prefix and the variable as two messages."""
    return ["echo: ", text] if text else ["echo: "]


def invalid_param(message: str) -> web.Response:
    return error_response(400, "invalid_param", message)


class GenerateRoutes:
    def __init__(self, fake: FakeDify) -> None:
        self.fake = fake

    async def generate(self, request: web.Request) -> web.StreamResponse:
        recorded = request[RECORDED]
        route, body = recorded.path, recorded.json
        if not isinstance(body, dict):
            return error_response(400, "bad_request", BAD_JSON)
        if (script := request[SCRIPT]) is not None:
            return await self._scripted(request, script, route, body)
        if not body.get("user"):  # checked by the auth decorator, before the view runs
            return invalid_param("Arg user must be provided.")
        modes = {ROUTE_MODES[route]} if route in ROUTE_MODES else CHAT_MODES
        if self.fake.mode not in modes:
            return error_response(400, *MODE_ERRORS[route])
        if route == "/chat-messages":
            return await self._chat(request, body)
        if route == "/workflows/run":
            return await self._workflow_run(request, body)
        return await self._completion(request, body)

    async def _chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        try:
            payload = ChatRequestPayload.model_validate(body)
        except ValidationError as exc:
            return invalid_param(validation_message(exc))
        streaming = payload.response_mode == "streaming"
        if self.fake.mode == "agent-chat" and not streaming:
            return invalid_param("Agent Chat App does not support blocking mode")
        if self.fake.mode == "agent" and not streaming:  # New Agent: bad_request (text a guess)
            return error_response(400, "bad_request", "Agent App does not support blocking mode")
        if (busy := self._busy()) is not None:
            return busy
        user, cid = str(body["user"]), payload.conversation_id
        if cid is not None and self.fake.conversations.get(cid) != user:
            # 1.13.2 looks the conversation up in the Chatflow worker: the relay just goes quiet.
            if streaming and self.fake.mode == "advanced-chat":
                return await self.fake.serve_stream(request, lambda s: run_silent(s, SILENT_HOLD))
            return error_response(404, "not_found", not_exists_message("/chat-messages"))
        if (bad_file := self._file_error(payload.files or [])) is not None:
            return bad_file
        if self.fake.flow is not None and self.fake.mode == "advanced-chat":
            return await self._run(request, self.fake.flow, "/chat-messages", body, streaming)
        compose = self.fake.compose
        answer = compose(payload.query) if compose else Answer(chunks=self.fake.echo(payload.query))
        return await self._answer(request, answer, "/chat-messages", body, streaming=streaming)

    async def _completion(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        try:
            payload = CompletionRequestPayload.model_validate(body)
        except ValidationError as exc:
            return invalid_param(validation_message(exc))
        if (busy := self._busy()) is not None:
            return busy
        query = payload.query or str(payload.inputs.get("query", ""))
        answer = Answer(chunks=self.fake.echo(query))
        streaming = payload.response_mode == "streaming"
        return await self._answer(
            request, answer, "/completion-messages", body, streaming=streaming
        )

    async def _workflow_run(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        try:
            payload = WorkflowRunPayload.model_validate(body)
        except ValidationError as exc:
            return invalid_param(validation_message(exc))
        if (missing := missing_input(self.fake.parameters, payload.inputs)) is not None:
            return invalid_param(missing)
        if (busy := self._busy()) is not None:
            return busy
        streaming = payload.response_mode == "streaming"
        if self.fake.flow is not None:
            return await self._run(request, self.fake.flow, "/workflows/run", body, streaming)
        variables = [name for name, _ in form_variables(self.fake.parameters)]
        variable = "query" if "query" in variables or not variables else variables[0]
        # Like the captured workflow app (Start -> End text = query): the input, as one chunk.
        answer = Answer(chunks=[str(payload.inputs.get(variable, ""))])
        return await self._answer(request, answer, "/workflows/run", body, streaming=streaming)

    def _busy(self) -> web.Response | None:
        # 1.13.2 answers an exhausted per-app limit with 400 invalid_param, not the documented 429.
        if self.fake.max_active <= 0 or self.fake.generating <= self.fake.max_active:
            return None
        return invalid_param(
            "Too many requests. Please try again later. The current maximum concurrent requests"
            f" allowed for {self.fake.app_id} is {self.fake.max_active}."
        )

    def _file_error(self, files: list[dict[str, Any]]) -> web.Response | None:
        if not (self.fake.parameters.get("file_upload") or {}).get("enabled"):
            return None  # Dify silently drops files when the app's upload feature is off
        for ref in files:
            if (
                ref.get("transfer_method") == "local_file"
                and ref.get("upload_file_id") not in self.fake.uploads
            ):
                return invalid_param("Invalid upload file")
        return None

    async def _scripted(
        self, request: web.Request, script: Behaviour, route: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        streaming = body.get("response_mode") == "streaming"
        if isinstance(script, Answer):
            return await self._answer(request, script, route, body, streaming=streaming)
        if isinstance(script, HumanFlow | CutRun):
            return await self._run(request, script, route, body, streaming)
        if not streaming:
            return _blocking_failure(request, script)
        register = not isinstance(script, FailedRun) or script.with_ids
        turn, message = self._begin_turn(route, body, register=register)
        chunks, delay = self.fake.echo(turn.query), self.fake.chunk_delay

        async def body_fn(s: SseStream) -> None:
            gen = Generation(s, turn, on_text=_answer_setter(message))
            if isinstance(script, FailedRun):
                await run_failed(s, turn, script)
            elif isinstance(script, StreamError):
                await run_stream_error(gen, script, chunks=chunks, delay=delay)
            elif isinstance(script, Cut):
                await run_cut(gen, script, chunks=chunks, delay=delay)

        return await self.fake.serve_stream(request, body_fn, turn=turn)

    async def _run(
        self,
        request: web.Request,
        script: HumanFlow | CutRun,
        route: str,
        body: dict[str, Any],
        streaming: bool,
    ) -> web.StreamResponse:
        """A generation backed by a run that lives on its own (dify_runs)."""
        turn, message = self._begin_turn(route, body)
        return await serve_generation(
            self.fake, request, turn=turn, message=message, script=script, streaming=streaming
        )

    async def _answer(
        self,
        request: web.Request,
        answer: Answer,
        route: str,
        body: dict[str, Any],
        *,
        streaming: bool,
    ) -> web.StreamResponse:
        turn, message = self._begin_turn(route, body, conversation_id=answer.conversation_id)
        delay = self.fake.chunk_delay if answer.delay is None else answer.delay
        if not streaming:
            await wait_event(self.fake.closing, delay * len(answer.chunks))
            if message is not None:
                message.answer = answer.text
            if turn.mode == "workflow":
                return blocking_response(ev.blocking_workflow_body(turn, {"text": answer.text}))
            meta = {"retriever_resources": answer.retriever_resources, "usage": answer.usage}
            return blocking_response(ev.blocking_body(turn, answer.text, **meta))

        async def body_fn(s: SseStream) -> None:
            gen = Generation(
                s,
                turn,
                progress=answer.progress,
                on_text=_answer_setter(message),
                on_chunk=self.fake.on_chunk,
            )
            await run_answer(gen, answer, delay=delay)

        return await self.fake.serve_stream(request, body_fn, turn=turn)

    def _begin_turn(
        self,
        route: str,
        body: dict[str, Any],
        *,
        conversation_id: str | None = None,
        register: bool = True,
    ) -> tuple[ev.Turn, StoredMessage | None]:
        """The ids of a new generation; chat turns create or continue their conversation."""
        user = str(body.get("user") or "")
        inputs = body["inputs"] if isinstance(body.get("inputs"), dict) else {}
        mode = ROUTE_MODES.get(route) or (
            self.fake.mode if self.fake.mode in CHAT_MODES else "advanced-chat"
        )
        turn = ev.Turn(
            mode=mode,
            user=user,
            end_user_id=self.fake.end_user_id(user),
            app_id=self.fake.app_id,
            query=str(body.get("query") or ""),
            inputs=inputs,
        )
        if mode in ("workflow", "completion"):
            return turn, None
        cid = conversation_id or str(body.get("conversation_id") or "").strip() or ev.new_id()
        turn.conversation_id = cid
        if not register:
            return turn, None
        return turn, self._remember(turn, body)

    def _remember(self, turn: ev.Turn, body: dict[str, Any]) -> StoredMessage:
        """Create or continue the turn's conversation and store its (growing) message."""
        cid = str(turn.conversation_id)
        self.fake.conversations.setdefault(cid, turn.user)
        record = self.fake.records.get(cid)
        if record is None:
            record = StoredConversation(
                cid, turn.user, turn.query, turn.inputs, turn.created_at, turn.created_at
            )
            self.fake.records[cid] = record
        record.updated_at = turn.created_at
        turn.dialogue_count = len(record.messages) + 1
        refs = body["files"] if isinstance(body.get("files"), list) else []
        files = [
            message_file(upload_id, self.fake.uploads[upload_id], origin=self.fake.origin, ref=ref)
            for ref in refs
            if isinstance(ref, dict)
            and (upload_id := str(ref.get("upload_file_id"))) in self.fake.uploads
        ]
        message = StoredMessage(
            turn.message_id, cid, turn.query, turn.inputs, turn.created_at, message_files=files
        )
        record.messages.append(message)
        return message

    # ---- stop -------------------------------------------------------------------------------

    async def stop(self, request: web.Request) -> web.StreamResponse:
        recorded = request[RECORDED]
        body = recorded.json if isinstance(recorded.json, dict) else {}
        is_workflow = recorded.path.startswith("/workflows/")
        if not body.get("user") and not is_workflow:
            return invalid_param("Arg user must be provided.")
        task_id = request.match_info["task_id"]
        self.fake.stops.append(task_id)
        if (run := self.fake.engine.by_task(task_id)) is not None:
            self.fake.engine.stop(run, user=str(body.get("user") or ""))
            self.fake.notify()
            return json_response({"result": "success"})
        control = self.fake.running.get(task_id)
        if control is not None and (is_workflow or control.user == str(body.get("user"))):
            control.interrupt("stop")
        elif control is not None:  # another user's stop: success, no interruption (see aborted)
            control.aborted = True
        self.fake.notify()
        return json_response({"result": "success"})


def _answer_setter(message: StoredMessage | None) -> Callable[[str], None]:
    def set_answer(text: str) -> None:
        if message is not None:
            message.answer = text

    return set_answer


def _blocking_failure(request: web.Request, script: Behaviour) -> web.StreamResponse:
    """Blocking mode answers with the HTTP error a stream reports in-band (node_failure_*)."""
    if isinstance(script, FailedRun):
        return invalid_param(f"Run failed: {script.error}")
    if isinstance(script, StreamError):
        return error_response(script.status, script.code, script.message)
    # Cut: the server drops the connection without answering.
    if request.transport is not None:
        request.transport.close()
    return web.Response()

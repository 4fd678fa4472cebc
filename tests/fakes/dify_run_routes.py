"""The fake Dify's run endpoints: Human Input forms, a run's event stream, run details.

Wire facts from the Dify 1.14.1 captures (tests/fixtures/dify/hitl_*): form bodies in
``json.dumps`` spacing, errors in the compact envelope, 412 before validation, a finished run
as one database-built frame, pings while waiting, and no replay of what was published before
the events stream subscribed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes import dify_events as ev
from tests.fakes import dify_human_events as hev
from tests.fakes.dify_behaviours import CutRun, HumanFlow
from tests.fakes.dify_run_state import Form, Run
from tests.fakes.dify_runs import relay
from tests.fakes.dify_state import RECORDED, StoredMessage
from tests.fakes.dify_stream import SseStream
from tests.fakes.dify_wire import (
    blocking_response,
    error_response,
    json_response,
)

if TYPE_CHECKING:
    from tests.fakes.dify import FakeDify

FILE_TYPES = frozenset({"image", "document", "audio", "video", "custom"})
TRANSFER_METHODS = frozenset({"local_file", "remote_url", "tool_file"})
RUN_NOT_FOUND = "Workflow run not found"
NO_USER = "Arg user must be provided."


def add_routes(app: web.Application, fake: FakeDify) -> None:
    routes = RunRoutes(fake)
    app.router.add_get("/v1/form/human_input/{form_token}", routes.get_form)
    app.router.add_post("/v1/form/human_input/{form_token}", routes.submit_form)
    app.router.add_get("/v1/workflow/{run_id}/events", routes.events)
    app.router.add_get("/v1/workflows/run/{run_id}", routes.run_detail)


def app_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2]


def dumps_response(obj: Any) -> web.Response:
    """The form GET body: ``json.dumps`` defaults, no trailing newline (hitl_form_get.http)."""
    headers = {"Content-Type": "application/json"}
    return web.Response(body=json.dumps(obj).encode(), status=200, reason="OK", headers=headers)


def form_not_found(token: str) -> web.Response:
    path = f"/v1/form/human_input/{token}"
    message = (
        f"Form not found. You have requested this URI [{path}] but did you mean"
        " /v1/form/human_input/<string:form_token> ?"
    )
    return error_response(404, "not_found", message)


class RunRoutes:
    def __init__(self, fake: FakeDify) -> None:
        self.fake = fake

    # ---- the form ---------------------------------------------------------------------------

    def _form(self, request: web.Request) -> Form | web.Response:
        """The form for this token and app key, or the 404/412 Dify answers first."""
        token = request.match_info["form_token"]
        form = self.fake.engine.forms.get(token)
        if form is None or form.app_key != app_key(request):
            return form_not_found(token)
        if form.status == "submitted":
            message = "This form has already been submitted by another user"
            return error_response(
                412, "human_input_form_submitted", f"{message}, form_id={form.form_id}"
            )
        if form.status == "timeout" or form.expiration_time <= self.fake.clock():
            message = f"This form has expired, form_id={form.form_id}"
            return error_response(412, "human_input_form_expired", message)
        return form

    async def get_form(self, request: web.Request) -> web.StreamResponse:
        form = self._form(request)
        if isinstance(form, web.Response):
            return form
        return dumps_response(
            {
                "form_content": form.content,
                "inputs": list(form.node.inputs),
                "resolved_default_values": form.resolved_defaults,
                "user_actions": list(form.node.actions),
                "expiration_time": form.expiration_time,
            }
        )

    async def submit_form(self, request: web.Request) -> web.StreamResponse:
        body = request[RECORDED].json
        body = body if isinstance(body, dict) else {}
        if not body.get("user"):  # the decorator's check, before the form is looked up
            return error_response(400, "invalid_param", NO_USER)
        form = self._form(request)
        if isinstance(form, web.Response):
            return form
        inputs = body.get("inputs")
        if not isinstance(inputs, dict):
            return error_response(400, "invalid_param", "inputs must be an object")
        action = str(body.get("action") or "")
        if (problem := validation_error(form, action, inputs)) is not None:
            return error_response(400, "invalid_form_data", problem)
        self.fake.engine.submit(form, action=action, data=inputs, user=str(body["user"]))
        return json_response({})

    # ---- the run's events -----------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        query = request[RECORDED].query
        user = query.get("user", "")
        if not user:
            return error_response(400, "invalid_param", NO_USER)
        if self.fake.mode not in ("advanced-chat", "workflow"):
            message = "Please check if your Workflow app mode matches the right API route."
            return error_response(400, "not_workflow_app", message)
        run = self.fake.engine.runs.get(request.match_info["run_id"])
        if run is None or run.app_key != app_key(request) or run.turn.user != user:
            return error_response(404, "not_found", RUN_NOT_FOUND)
        snapshot = query.get("include_state_snapshot") == "true"
        keep_open = query.get("continue_on_pause") == "true"
        if run.finished is not None:
            return await self._finished(request, run)
        return await self.fake.serve_stream(
            request, lambda s: self._follow(s, run, snapshot=snapshot, keep_open=keep_open)
        )

    async def _finished(self, request: web.Request, run: Run) -> web.StreamResponse:
        async def body(s: SseStream) -> None:
            await s.open()
            await s.write(hev.finished_from_db(run))

        return await self.fake.serve_stream(request, body)

    async def _follow(self, s: SseStream, run: Run, *, snapshot: bool, keep_open: bool) -> None:
        await s.open()
        await s.ping()  # 1.14.1 pings first and only then subscribes: a small window is lost
        queue = run.subscribe()
        self.fake.notify()
        try:
            if snapshot:
                answer = run.text if self.fake.snapshot_live else run.saved
                for event in hev.snapshot_events(run, stored_answer=answer):
                    await s.send(event)
                if run.status == "paused" and not keep_open:
                    await s.pause(self.fake.close_delay, pings=False)
                    return
            if run.release_on_reattach:
                self.fake.engine.release(run)
            await relay(
                s,
                queue,
                stop_at_terminal=not keep_open,
                close_delay=self.fake.close_delay,
                idle=self.fake.idle_timeout,
            )
        finally:
            run.unsubscribe(queue)

    async def run_detail(self, request: web.Request) -> web.StreamResponse:
        run = self.fake.engine.runs.get(request.match_info["run_id"])
        if run is None or run.app_key != app_key(request):
            return error_response(404, "not_found", RUN_NOT_FOUND)
        return json_response(hev.run_detail(run))


# ---- submissions, checked as 1.14.1 checks them --------------------------------------------


def validation_error(form: Form, action: str, inputs: dict[str, Any]) -> str | None:
    """Dify's ``invalid_form_data`` message for a submission, or None when it is valid."""
    if action not in {a["id"] for a in form.node.actions}:
        return f"Invalid action: {action}"
    missing = [i["output_variable_name"] for i in form.node.inputs]
    missing = [name for name in missing if name not in inputs]
    if missing:
        return f"Missing required inputs: {', '.join(missing)}"
    fields = {i["output_variable_name"]: i for i in form.node.inputs}
    for name, value in inputs.items():
        if name in fields and (problem := _value_error(fields[name], name, value)) is not None:
            return problem
    return None


def _value_error(field: dict[str, Any], name: str, value: Any) -> str | None:
    kind = field["type"]
    if kind == "select":
        if not isinstance(value, str):
            return f"Invalid value for select input '{name}': expected string"
        source = field.get("option_source") or {}
        if source.get("type") == "constant" and value not in (source.get("value") or ()):
            return f"Invalid value for select input '{name}': {value}"
    elif kind == "file":
        if not isinstance(value, Mapping):
            return f"Invalid value for file input '{name}': expected mapping"
        return _file_error(field, name, value)
    elif kind == "file-list":
        if not isinstance(value, list):
            return f"Invalid value for file list input '{name}': expected list"
        if any(not isinstance(item, Mapping) for item in value):
            return f"Invalid value for file list input '{name}': expected list of mappings"
        for item in value:
            if (problem := _file_error(field, name, item)) is not None:
                return problem
        limit = field.get("number_limits") or 0
        if limit and len(value) > limit:
            return f"Invalid value for file list input '{name}': exceeds number limit"
    return None


def _file_error(field: dict[str, Any], name: str, value: Mapping[str, Any]) -> str | None:
    prefix = f"Invalid value for file input '{name}'"
    kind, method = value.get("type"), value.get("transfer_method")
    if kind not in FILE_TYPES:
        return f"{prefix}: unsupported file type"
    if method not in TRANSFER_METHODS:
        return f"{prefix}: unsupported transfer method"
    types = field.get("allowed_file_types") or []
    extensions = field.get("allowed_file_extensions") or []
    methods = field.get("allowed_file_upload_methods") or []
    extension = str(value.get("extension") or "")
    type_ok = not types or kind in types or ("custom" in types and extension in extensions)
    if not type_ok or (methods and method not in methods):
        return f"{prefix}: file is not allowed by config"
    return None


# ---- run-backed generations: HumanFlow and CutRun on the generate routes ----------------------


async def serve_generation(
    fake: FakeDify,
    request: web.Request,
    *,
    turn: ev.Turn,
    message: StoredMessage | None,
    script: HumanFlow | CutRun,
    streaming: bool,
) -> web.StreamResponse:
    """Start a run in the background and relay it to this response until it pauses or ends
    (or, for a CutRun, until the connection is dropped mid-answer)."""
    cut = script if isinstance(script, CutRun) else None
    flow = script if isinstance(script, HumanFlow) else HumanFlow(before=(), steps=())
    engine = fake.engine
    run = engine.create(turn, flow, app_key=app_key(request), message=message, streaming=streaming)
    if not streaming:
        await engine.begin(run, cut=None)
        return _blocking(run)
    queue = run.subscribe()
    engine.spawn(engine.begin(run, cut=cut))

    async def body(s: SseStream) -> None:
        await s.open()
        await s.ping()
        try:
            await relay(
                s,
                queue,
                stop_at_terminal=True,
                close_delay=fake.close_delay,
                idle=fake.idle_timeout,
                cut_after=cut.after if cut else None,
            )
        finally:
            run.unsubscribe(queue)

    return await fake.serve_stream(request, body)


def _blocking(run: Run) -> web.Response:
    if run.status == "paused":
        return blocking_response(hev.blocking_paused(run))
    if run.turn.mode == "workflow":
        return blocking_response(ev.blocking_workflow_body(run.turn, run.outputs))
    return blocking_response(ev.blocking_body(run.turn, run.text))

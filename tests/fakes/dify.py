"""A loopback aiohttp fake of the Dify 1.13.2 Service API that records every request it gets.

Defaults behave like a real server hosting an "echo" app (answer = ``"echo: " + query``), with
real conversation state; ``enqueue(path, *behaviours)`` scripts the next answers on a path.
Wire details (JSON flavours, headers, pings, error texts) follow tests/fixtures/dify/.

Runs that pause for a person or outlive their client follow the 1.14.1 captures: a
``HumanFlow`` (``FakeDify(flow=...)`` or enqueued) pauses at Human Input nodes, answered through
``/form/human_input/{token}`` and followed on ``/workflow/{run_id}/events``; a ``CutRun`` drops
the connection while its run goes on (dify_runs, dify_run_routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes import dify_events as ev
from tests.fakes import dify_generate, dify_routes, dify_run_routes
from tests.fakes.dify_behaviours import (
    TURN_BEHAVIOURS,
    Answer,
    Behaviour,
    Cut,
    CutRun,
    FailedRun,
    HttpError,
    HumanFlow,
    HumanInput,
    Replay,
    ReplayHTTP,
    SilentPing,
    Stall,
    StreamError,
)
from tests.fakes.dify_generate import GENERATE_PATHS
from tests.fakes.dify_run_state import Form, Run
from tests.fakes.dify_runs import RunEngine
from tests.fakes.dify_state import (
    FILE_PARTS,
    RECORDED,
    SCRIPT,
    RecordedRequest,
    StoredConversation,
    UploadedFile,
)
from tests.fakes.dify_stream import (
    SseStream,
    StreamControl,
    run_replay,
    run_replay_http,
    run_silent,
    wait_event,
)
from tests.fakes.dify_wire import DIFY_HEADERS, NOT_FOUND_URL, error_response, load_json

__all__ = [
    "Answer",
    "Behaviour",
    "Cut",
    "CutRun",
    "FailedRun",
    "FakeDify",
    "Form",
    "HttpError",
    "HumanFlow",
    "HumanInput",
    "RecordedRequest",
    "Replay",
    "ReplayHTTP",
    "Run",
    "SilentPing",
    "Stall",
    "StreamError",
    "UploadedFile",
]


class FakeDify:
    """Dify on 127.0.0.1:<random port>. Use ``async with FakeDify() as dify: dify.base_url``."""

    def __init__(
        self,
        *,
        mode: str = "advanced-chat",
        api_key: str = "app-test-key",
        parameters: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        spaced_json: bool = False,
        max_active: int = 0,
        chunk_delay: float = 0.0,
        ping_interval: float = 10.0,
        upload_limit_mb: float = 0.0,
        app_id: str | None = None,
        flow: HumanFlow | None = None,
        close_delay: float = 0.0,
        resume_delay: float = 0.0,
        clock: Callable[[], float] = time.time,
        version: str = "1.13.2",
    ) -> None:
        self.mode = mode
        self.api_key = api_key
        self.spaced_json = spaced_json
        self.max_active = max_active  # 0 = unlimited
        self.chunk_delay = chunk_delay
        # How the default answer is chunked (the captured echo app: prefix, then the query).
        self.echo: Callable[[str], list[str]] = dify_generate.echo_chunks
        self.chaos: Callable[[RecordedRequest], Behaviour | None] | None = None
        # Benchmarks: the whole chat answer for a query (pacing included), and a hook called
        # just before each answer chunk is written.
        self.compose: Callable[[str], Answer] | None = None
        self.on_chunk: Callable[[ev.Turn, int], None] | None = None
        self.ping_interval = ping_interval
        self.upload_limit_mb = upload_limit_mb  # 0 = unlimited
        self.app_id = app_id or str(uuid.uuid4())
        # Runs (1.14.1): ``flow`` makes every Chatflow/Workflow message pause at Human Input
        # nodes. A paused or finished stream's body ends ``close_delay`` after its last event
        # (about 1 s on a real server; 0 keeps tests fast); a submitted form's run resumes
        # ``resume_delay`` later (35-80 ms on 1.14.1). ``clock`` decides form expiry.
        self.flow = flow
        self.close_delay = close_delay
        self.resume_delay = resume_delay
        self.hold_resumes = False  # True: a resumed run waits for ``release(run_id)`` to start
        self.clock = clock
        self.version = version
        self.idle_timeout = 300.0  # an events stream with nothing to say closes after this
        # The snapshot's message_replace is the message row's answer, which Dify writes at a
        # pause and at the end; True replays the live answer instead.
        self.snapshot_live = False
        self.other_keys: set[str] = set()  # keys of other apps: valid, but own no forms or runs
        self.engine = RunEngine(self)
        self.tenant_id = str(uuid.uuid4())
        default_parameters = "workflow_parameters" if mode == "workflow" else "parameters"
        self.parameters: dict[str, Any] = (
            parameters if parameters is not None else load_json(default_parameters)
        )
        self.info: dict[str, Any] = (
            info if info is not None else {**load_json("info"), "mode": mode}
        )
        self.base_url = ""
        self.origin = ""
        self.requests: list[RecordedRequest] = []
        self.conversations: dict[str, str] = {}
        self.uploads: dict[str, UploadedFile] = {}
        self.stops: list[str] = []
        self.active_streams = 0
        # Plumbing shared with dify_generate / dify_routes, not meant for tests:
        self.records: dict[str, StoredConversation] = {}  # history behind ``conversations``
        self.running: dict[str, StreamControl] = {}  # task_id -> its stream, for the stop routes
        self.generating = 0  # generate requests in flight, for ``max_active``
        self.closing = asyncio.Event()
        self._scripts: defaultdict[str, deque[Behaviour]] = defaultdict(deque)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._controls: set[StreamControl] = set()
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self, *, port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024 * 1024)
        app.on_response_prepare.append(self._add_headers)
        dify_generate.add_routes(app, self)
        dify_routes.add_routes(app, self)
        dify_run_routes.add_routes(app, self)
        # handler_cancellation: a client disconnect cancels the handler, so idle streams notice.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.origin}/v1"

    async def close(self) -> None:
        self.closing.set()
        for control in list(self._controls):
            control.interrupt("close")
        await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDify:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- what tests use -----------------------------------------------------------------

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(
        self,
        path: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
    ) -> list[RecordedRequest]:
        """All requests to ``path`` once there are at least ``count``; TimeoutError otherwise."""
        await self._until(lambda: len(self.requests_to(path)) >= count, timeout, f"{count}x {path}")
        return self.requests_to(path)

    async def wait_streams(self, count: int = 0, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Until exactly ``count`` streams are open (e.g. 0 after a client cancelled)."""
        await self._until(lambda: self.active_streams == count, timeout, f"{count} open streams")

    def enqueue(self, path: str, *behaviours: Behaviour) -> None:
        """Script the next requests to ``path`` (FIFO); the default applies once they are used."""
        for behaviour in behaviours:
            if isinstance(behaviour, TURN_BEHAVIOURS) and path not in GENERATE_PATHS:
                raise ValueError(f"{type(behaviour).__name__} needs a generate route, not {path}")
        self._scripts[path].extend(behaviours)

    # ---- runs, forms (1.14.1) ----------------------------------------------------------------

    @property
    def runs(self) -> list[Run]:
        """Every workflow run the engine started, oldest first."""
        return list(self.engine.runs.values())

    def run(self, run_id: str) -> Run:
        return self.engine.runs[run_id]

    def form(self, token: str) -> Form:
        return self.engine.forms[token]

    def release(self, run_id: str) -> None:
        """Let a run held by ``CutRun(until="release")`` or ``HumanInput.hold_after`` go on."""
        self.engine.release(self.engine.runs[run_id])

    def expire_forms(self) -> list[Form]:
        """Celery beat's timeout check: waiting forms past expiry (per ``clock``) time out and
        their runs resume down the timeout branch."""
        return self.engine.expire_due()

    async def wait_run(
        self,
        count: int = 1,
        *,
        status: str | None = None,
        held: bool | None = None,
        subscribed: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fake's contract)
    ) -> Run:
        """The ``count``-th run once it exists (and has ``status``, is ``held``, has
        ``subscribed`` live event streams, if given)."""

        def ready() -> bool:
            if len(self.engine.runs) < count:
                return False
            run = self.runs[count - 1]
            return (
                (status is None or run.status == status)
                and (held is None or run.held == held)
                and (subscribed is None or len(run.subscribers) >= subscribed)
            )

        what = f"run #{count} status={status} held={held} subscribed={subscribed}"
        await self._until(ready, timeout, what)
        return self.runs[count - 1]

    def end_user_id(self, user: str) -> str:
        """Dify's EndUser id for a ``user`` string: stable per app, like the real table row."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dify:{self.app_id}:{user}"))

    def notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    async def _until(self, predicate: Callable[[], bool], limit: float, what: str) -> None:
        """Event-driven: ``notify()`` resolves the future when the state changes."""
        if predicate():
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(limit):
                await entry[1]
        except TimeoutError:
            raise TimeoutError(f"FakeDify: no {what} within {limit} s") from None
        finally:
            self._waiters.remove(entry)

    # ---- every request --------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        recorded = await self._record(request)
        routing_error = request.match_info.http_exception
        if routing_error is not None:  # Flask routes before authenticating
            code = "not_found" if routing_error.status == 404 else "method_not_allowed"
            message = (
                NOT_FOUND_URL
                if code == "not_found"
                else "The method is not allowed for the requested URL."
            )
            return error_response(routing_error.status, code, message)
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if (denied := self._auth_error(request)) is not None:
            return denied
        generating = recorded.path in GENERATE_PATHS
        self.generating += generating
        try:
            script = (
                self._scripts[recorded.path].popleft() if self._scripts[recorded.path] else None
            )
            if script is None and generating and self.chaos is not None:
                script = self.chaos(recorded)  # benchmarks: failures drawn at random
            if isinstance(script, Stall):
                await wait_event(self.closing, script.seconds)
                script = None
            if script is not None and not isinstance(script, TURN_BEHAVIOURS):
                return await self._generic(request, script)
            request[SCRIPT] = script
            return await handler(request)
        finally:
            self.generating -= generating

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        form: dict[str, str] = {}
        files: dict[str, tuple[str, str, bytes]] = {}
        if request.content_type.startswith("multipart/"):
            # Read part by part into memory, as Dify does (and nothing is left open when a
            # client aborts an upload midway).
            request[FILE_PARTS] = 0
            async for part in await request.multipart():
                if not isinstance(part, BodyPartReader) or not part.name:
                    continue
                if part.filename is None:
                    form.setdefault(part.name, await part.text())
                    continue
                request[FILE_PARTS] += 1
                kind = part.headers.get("Content-Type", "application/octet-stream")
                files.setdefault(part.name, (part.filename, kind, bytes(await part.read())))
        elif raw := await request.read():
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        path = request.path[3:] if request.path.startswith("/v1/") else request.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = RecordedRequest(
            request.method, path, dict(request.query), headers, body, form, files
        )
        self.requests.append(recorded)
        request[RECORDED] = recorded
        self.notify()
        return recorded

    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None or " " not in header:
            message = "Authorization header must be provided and start with 'Bearer'"
        elif header.split(None, 1)[0].lower() != "bearer":
            message = "Authorization scheme must be 'Bearer'"
        elif header.split(None, 1)[1] not in {self.api_key, *self.other_keys}:
            message = "Access token is invalid"
        else:
            return None
        challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
        return error_response(401, "unauthorized", message, headers=challenge)

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in DIFY_HEADERS.items():
            response.headers.setdefault(name, self.version if name == "X-Version" else value)
        response.headers["Server"] = DIFY_HEADERS["Server"]  # aiohttp has set its own by now

    # ---- streams ----------------------------------------------------------------------------

    async def serve_stream(
        self,
        request: web.Request,
        body: Callable[[SseStream], Awaitable[web.StreamResponse | None]],
        *,
        turn: ev.Turn | None = None,
    ) -> web.StreamResponse:
        """Run one SSE response, keeping ``active_streams`` and the stop registry right."""
        control = StreamControl(
            task_id=turn.task_id if turn else "", user=turn.user if turn else ""
        )
        if self.closing.is_set():
            control.interrupt("close")
        stream = SseStream(
            request,
            control,
            spaced=self.spaced_json,
            ping_interval=self.ping_interval,
            on_open=self._opened,
        )
        self._controls.add(control)
        if turn is not None:
            self.running[turn.task_id] = control
        try:
            return await body(stream) or stream.response
        except ConnectionError:  # the client went away mid-write; aiohttp treats it as quiet
            return stream.response
        finally:
            self._controls.discard(control)
            if turn is not None:
                self.running.pop(turn.task_id, None)
            if stream.opened:
                self.active_streams -= 1
                self.notify()

    def _opened(self) -> None:
        self.active_streams += 1
        self.notify()

    async def _generic(self, request: web.Request, script: Behaviour) -> web.StreamResponse:
        if isinstance(script, HttpError):
            return error_response(
                script.status, script.code, script.message, headers=script.headers
            )
        if isinstance(script, SilentPing):
            return await self.serve_stream(request, lambda s: run_silent(s, script.hold))
        if isinstance(script, Replay):
            return await self.serve_stream(request, lambda s: run_replay(s, script))
        if isinstance(script, ReplayHTTP):
            return await self.serve_stream(request, lambda s: run_replay_http(s, script))
        raise TypeError(f"not a generic behaviour: {script!r}")

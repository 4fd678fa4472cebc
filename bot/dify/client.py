"""The Dify Service API client: one shared httpx AsyncClient, typed events, one error tree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from bot.dify.events import to_form
from bot.dify.http import MAX_ERROR_BODY, retrying, to_http_error, to_transport_error
from bot.dify.multipart import FilePart, to_multipart
from bot.dify.stream import AnswerStream, Follow, drain
from bot.errors import (
    ConversationNotFound,
    DifyError,
    DifyHTTPError,
    DifyProtocolError,
    FormNotFound,
    RunNotFound,
)
from bot.models import FormRequest

CHAT_MODES = frozenset({"chat", "agent-chat", "advanced-chat", "agent"})
MODES = CHAT_MODES | {"workflow", "completion"}


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """One question for the app, whatever its mode."""

    query: str
    user: str
    conversation_id: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    files: tuple[dict[str, Any], ...] = ()
    trace_id: str = ""


def build_http(
    base_url: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 1000,
) -> httpx.AsyncClient:
    """The one AsyncClient for a Dify base URL. Read timeout is per read: Dify pings every ~10 s.

    httpx is the API; the wire is aiohttp's (httpx-aiohttp): its C HTTP parser costs a quarter of
    h11's per streamed chunk, and Dify sends one chunk per token
    (benchmarks/dify_client_throughput.py). Tests inject httpx.MockTransport instead.
    """
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=30.0)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)
    if transport is None:
        transport = AiohttpTransport(limits=limits, trust_env=True)
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/", timeout=timeout, limits=limits, transport=transport
    )


class DifyClient:
    """Talks to one Dify app (one API key). ``mode`` comes from ``/info`` unless given."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        mode: str = "",
        query_variable: str = "query",
        max_retries: int = 3,
        first_event_timeout: float = 15.0,
        auto_generate_name: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_error: Callable[[DifyError], None] | None = None,
    ) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.mode = mode
        self.query_variable = query_variable
        self.max_retries = max_retries
        self.first_event_timeout = first_event_timeout
        self.auto_generate_name = auto_generate_name
        self._sleep = sleep
        self._on_error = on_error  # sees every HTTP error response (metrics)
        self._draining: set[asyncio.Task[None]] = set()
        url = http.base_url
        self.origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self.base_url = str(url).rstrip("/")

    # ---- answering ----------------------------------------------------------------------

    @asynccontextmanager
    async def stream(self, request: AnswerRequest) -> AsyncIterator[AnswerStream]:
        """Open a streamed answer; retried with backoff only until Dify starts answering."""
        if not self.mode:  # Dify was unreachable at startup
            await self.detect_mode()
        path, body = self._route(request)
        response = await self._open("POST", path, json=body, trace_id=request.trace_id)
        stream = AnswerStream(self, response, request)
        try:
            yield stream
        finally:
            await self._close(stream, response)

    async def _close(self, stream: AnswerStream, response: httpx.Response) -> None:
        """Close at once, or, after a closing event, drain the rest in the background first so
        the connection is reused (the answer does not wait for Dify's body to end)."""
        rest = stream.rest
        if rest is None:
            await response.aclose()
            return

        async def drained() -> None:
            try:
                await drain(rest)
            finally:
                await response.aclose()

        task = asyncio.create_task(drained())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def settle(self) -> None:
        """Until every finished answer's response is drained (before its pool is closed)."""
        while self._draining:
            await asyncio.wait(set(self._draining))

    def _route(self, request: AnswerRequest) -> tuple[str, dict[str, Any]]:
        mode = self.mode or "chat"
        body: dict[str, Any] = {"inputs": dict(request.inputs), "user": request.user}
        body["response_mode"] = "streaming"
        if request.files:
            body["files"] = list(request.files)
        if mode in CHAT_MODES:
            body["query"] = request.query
            body["auto_generate_name"] = self.auto_generate_name
            if request.conversation_id:
                body["conversation_id"] = request.conversation_id
            return "chat-messages", body
        # Workflow and completion apps take the question as an input variable (a setting).
        body["inputs"].setdefault(self.query_variable, request.query)
        if mode == "workflow":
            return "workflows/run", body
        body["query"] = request.query
        return "completion-messages", body

    async def stop(self, task_id: str, *, user: str) -> None:
        """Ask Dify to stop a running answer (it answers success even for unknown tasks)."""
        mode = self.mode or "chat"
        if mode == "workflow":
            path = f"workflows/tasks/{task_id}/stop"
        elif mode == "completion":
            path = f"completion-messages/{task_id}/stop"
        else:
            path = f"chat-messages/{task_id}/stop"
        await self._json("POST", path, json={"user": user})

    # ---- Human Input forms and a run's events (Dify 1.14+, Chatflow and Workflow apps) ------

    async def form(self, token: str) -> FormRequest:
        """The form as it stands (``GET /form/human_input/{token}``). The body names no ids:
        only ``token`` and the form itself are filled in. Raises FormAlreadySubmitted,
        FormExpired or FormNotFound when it can no longer be answered."""
        body = await self._form_call("GET", token)
        return to_form(body, token=token)

    async def submit_form(
        self, token: str, *, inputs: dict[str, Any], action: str, user: str
    ) -> None:
        """Answer a form; Dify then resumes the run in the background (it does not wait).

        ``user`` should be the run's: Dify accepts anyone's submit, but only the run's user may
        follow its events. Never retried: after a 5xx Dify may have taken it, and a retry would
        then look like someone else's submit (412). FormInvalid leaves the form open.
        """
        body = {"inputs": dict(inputs), "action": action, "user": user}
        await self._form_call("POST", token, json=body, retry=False)

    async def _form_call(self, method: str, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return await self._json(method, f"form/human_input/{token}", **kwargs)
        except DifyHTTPError as exc:
            if exc.status == 404:
                raise FormNotFound(exc.message, status=404, code=exc.code) from exc
            raise

    @asynccontextmanager
    async def run_events(
        self,
        run_id: str,
        *,
        user: str,
        snapshot: bool = False,
        continue_on_pause: bool = False,
        shown: str = "",
    ) -> AsyncIterator[AnswerStream]:
        """Follow a run (``GET /workflow/{run_id}/events``): the same typed stream as
        ``stream()``, for a run resumed after a form or reattached after a cut.

        Dify relays only what the run publishes after this subscribes. ``snapshot`` first
        replays the run so far (its stored answer as a ``TextReplace``, its nodes, and a paused
        run's forms, then the end if paused). ``shown`` is the text the caller already shows, so
        a stale snapshot never rewinds it (see ``Follow``). ``continue_on_pause``: a pause does
        not end the stream. Raises RunNotFound for another user's or an unknown run.
        """
        stream = await self.subscribe(
            run_id, user=user, snapshot=snapshot, continue_on_pause=continue_on_pause, shown=shown
        )
        try:
            yield stream
        finally:
            await stream.close()

    async def subscribe(
        self,
        run_id: str,
        *,
        user: str,
        snapshot: bool = False,
        continue_on_pause: bool = False,
        shown: str = "",
    ) -> AnswerStream:
        """``run_events`` opened now, for a caller that reads it later (``stream.close()``
        it): subscribed before a form's submit, it misses none of the resumed run's events."""
        params = {"user": user}
        if snapshot:
            params["include_state_snapshot"] = "true"
        if continue_on_pause:
            params["continue_on_pause"] = "true"
        try:
            response = await self._open("GET", f"workflow/{run_id}/events", params=params)
        except DifyHTTPError as exc:
            if exc.status == 404:
                raise RunNotFound(exc.message, status=404, code=exc.code) from exc
            raise
        follow = Follow(known=shown, keep_open=continue_on_pause)
        stream = AnswerStream(self, response, follow=follow)
        stream.workflow_run_id = run_id
        return stream

    # ---- app and conversation endpoints ---------------------------------------------------

    async def info(self, *, retry: bool = True) -> dict[str, Any]:
        """``retry=False`` for health probes: one attempt, an honest answer now."""
        return await self._json("GET", "info", retry=retry)

    async def parameters(self) -> dict[str, Any]:
        return await self._json("GET", "parameters")

    async def detect_mode(self) -> str:
        """Read the app mode once (startup); a configured mode wins."""
        if not self.mode:
            mode = (await self.info()).get("mode")
            if mode not in MODES:
                raise DifyProtocolError(f"unknown Dify app mode {mode!r}")
            self.mode = mode
        return self.mode

    async def upload_stream(self, part: FilePart, *, user: str) -> dict[str, Any]:
        """``/files/upload`` fed straight from a download (never retried: a stream is read once).
        ``user`` must be the chat call's: Dify only lets that user reference the file."""
        headers, body = to_multipart(part, {"user": user})
        return await self._json("POST", "files/upload", retry=False, content=body, headers=headers)

    async def audio_to_text(self, data: bytes, *, filename: str, mime_type: str, user: str) -> str:
        files = {"file": (filename, data, mime_type)}
        body = await self._json("POST", "audio-to-text", files=files, data={"user": user})
        return str(body.get("text") or "")

    async def feedback(
        self, message_id: str, *, rating: str | None, user: str, content: str | None = None
    ) -> None:
        body: dict[str, Any] = {"rating": rating, "user": user}
        if content:
            body["content"] = content
        await self._json("POST", f"messages/{message_id}/feedbacks", json=body)

    async def suggested(self, message_id: str, *, user: str) -> list[str]:
        body = await self._json("GET", f"messages/{message_id}/suggested", params={"user": user})
        return [str(item) for item in body.get("data") or ()]

    async def messages(self, conversation_id: str, *, user: str, limit: int = 20) -> dict[str, Any]:
        params = {"conversation_id": conversation_id, "user": user, "limit": str(limit)}
        return await self._json("GET", "messages", params=params)

    async def conversation_exists(self, conversation_id: str, *, user: str) -> bool:
        """False only when Dify says the conversation is gone; other errors count as 'exists'."""
        try:
            await self.messages(conversation_id, user=user, limit=1)
        except ConversationNotFound:
            return False
        except DifyError:
            return True
        return True

    # ---- transport ------------------------------------------------------------------------

    async def _open(
        self, method: str, path: str, *, trace_id: str = "", retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        if trace_id:
            headers["X-Trace-Id"] = trace_id
        async for attempt in retrying(self.max_retries if retry else 0, self._sleep):
            with attempt:
                request = self._http.build_request(method, path, headers=headers, **kwargs)
                try:
                    response = await self._http.send(request, stream=True)
                except httpx.TransportError as exc:
                    raise to_transport_error(exc) from exc
                if response.is_success:
                    return response
                body = await _read_bounded(response)
                error = to_http_error(response.status_code, body, response.headers)
                if self._on_error is not None:
                    self._on_error(error)
                raise error
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _json(
        self, method: str, path: str, *, trace_id: str = "", retry: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self._open(method, path, trace_id=trace_id, retry=retry, **kwargs)
        try:
            body = await _read_bounded(response, limit=16 * 1024 * 1024)
        except httpx.TransportError as exc:
            raise to_transport_error(exc) from exc
        if not body:
            return {}  # DELETE /conversations answers 204 with no body
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DifyProtocolError(f"{path}: response is not JSON", code="not_json") from exc
        return parsed if isinstance(parsed, dict) else {"data": parsed}


async def _read_bounded(response: httpx.Response, *, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read at most ``limit`` bytes of a body and close the response."""
    chunks = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            chunks += chunk
            if len(chunks) > limit:
                raise DifyProtocolError(f"response body larger than {limit} bytes")
    finally:
        await response.aclose()
    return bytes(chunks)

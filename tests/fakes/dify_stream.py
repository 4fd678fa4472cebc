"""SSE streams of the fake Dify: the writer (pings, stop, disconnects) and the behaviour runners."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from tests.fakes import dify_events as ev
from tests.fakes import dify_human_events as hev
from tests.fakes.dify_behaviours import (
    Answer,
    Cut,
    FailedRun,
    Replay,
    ReplayHTTP,
    StreamError,
    Turnstile,
)
from tests.fakes.dify_wire import (
    PING_FRAME,
    SSE_CONTENT_TYPE,
    load_http,
    load_stream,
    reason,
    replay_headers,
    sse_frame,
)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; True when it fired."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


@dataclass(eq=False)
class StreamControl:
    """Lets the stop endpoint and FakeDify.close() interrupt a running stream."""

    task_id: str = ""
    user: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""  # "stop" (emit the stop epilogue) or "close" (just end)
    aborted: bool = False  # stopped by another user: 1.13.2 lets a Chatflow run on, then fails it

    def interrupt(self, why: str) -> None:
        if not self.reason:
            self.reason = why
            self.wake.set()


class SseStream:
    """A chunked ``text/event-stream`` response that pings through silences like Dify."""

    def __init__(
        self,
        request: web.Request,
        control: StreamControl,
        *,
        spaced: bool,
        ping_interval: float,
        on_open: Callable[[], None],
    ) -> None:
        self.request = request
        self.control = control
        self.spaced = spaced
        self.ping_interval = ping_interval
        self.response = web.StreamResponse(status=200, reason="OK")
        self.opened = False
        self._on_open = on_open
        self._last_write = 0.0

    async def open(self, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        if self.opened:
            return
        self.response.set_status(status, reason(status))
        self.response.headers["Content-Type"] = SSE_CONTENT_TYPE
        self.response.headers.update(headers or {})
        self.response.enable_chunked_encoding()
        await self.response.prepare(self.request)
        self.opened = True
        self._on_open()
        self._last_write = asyncio.get_running_loop().time()

    async def write(self, data: bytes) -> None:
        await self.response.write(data)
        self._last_write = asyncio.get_running_loop().time()

    async def send(self, event: dict[str, Any]) -> None:
        await self.write(sse_frame(event, spaced=self.spaced))

    async def ping(self) -> None:
        await self.write(PING_FRAME)

    async def pause(self, seconds: float, *, pings: bool = True) -> bool:
        """Sleep, pinging after ``ping_interval`` of silence; False if stopped or closing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pings = pings and self.ping_interval > 0
        while not self.control.reason:
            now = loop.time()
            if now >= deadline:
                return True
            until = min(deadline, self._last_write + self.ping_interval) if pings else deadline
            if until > now:
                await wait_event(self.control.wake, until - now)
            else:
                await self.ping()
        return False

    def abort(self) -> None:
        """Drop the connection: what was written is flushed, the chunked terminator never comes."""
        if self.request.transport is not None:
            self.request.transport.close()


class Generation:
    """Writes one turn's events in the order of its app mode, tracking the answer so far."""

    def __init__(
        self,
        stream: SseStream,
        turn: ev.Turn,
        *,
        progress: bool = True,
        on_text: Callable[[str], None] = lambda _: None,
        on_chunk: Callable[[ev.Turn, int], None] | None = None,
    ) -> None:
        self.s = stream
        self.turn = turn
        self.progress = progress
        self.on_text = on_text
        self.on_chunk = on_chunk  # called just before chunk ``i`` is written (benchmark timing)
        self.text = ""
        self.tts: list[str] = []  # audio chunks still to send, one after each text chunk
        self._start_exec = ev.new_id()

    async def begin(self, thoughts: list[dict[str, Any]] | None = None) -> None:
        await self.s.open()
        if self.turn.workflow_backed:
            # 1.13.2 relays Chatflow/workflow runs from a worker and pings before the first event.
            await self.s.ping()
            await self.s.send(ev.workflow_started(self.turn))
            if self.progress:
                await self.s.send(ev.node_started(self.turn, self._start_exec, ev.START))
        for position, thought in enumerate(thoughts or [], start=1):
            await self.s.send(ev.agent_thought(self.turn, thought, position))

    async def deltas(
        self,
        chunks: list[str],
        delay: float,
        *,
        delays: tuple[float, ...] = (),
        first_delay: float = 0.0,
        turnstile: Turnstile | None = None,
    ) -> bool:
        """Stream the chunks, ``delay`` (or ``delays[i]``) after each and so also before what
        follows them; ``first_delay`` before the first.

        False when interrupted (after the stop epilogue, if it was a stop).
        """
        if first_delay > 0 and not await self.s.pause(first_delay):
            return await self._interrupted()
        for index, chunk in enumerate(chunks):
            if turnstile is not None and not await turnstile.until(index, self.s.control.wake):
                return await self._interrupted()
            if self.s.control.reason:
                return await self._interrupted()
            if self.on_chunk is not None:
                self.on_chunk(self.turn, index)
            await self.s.send(self._delta(chunk))
            if self.tts:
                await self.s.send(hev.tts_message(self.turn, self.tts.pop(0)))
            self.text += chunk
            self.on_text(self.text)
            if not await self.s.pause(delays[index] if index < len(delays) else delay):
                return await self._interrupted()
        return True

    def _delta(self, chunk: str) -> dict[str, Any]:
        if self.turn.mode == "agent":  # New Agent streams agent_message deltas
            return hev.agent_delta(self.turn, chunk)
        return ev.text_delta(self.turn, chunk)

    async def reasoning(self, parts: tuple[str, ...]) -> None:
        """Separated reasoning before the answer; a last empty ``is_final`` chunk closes it."""
        for part in parts:
            await self.s.send(hev.reasoning_chunk(self.turn, part))
        if parts:
            await self.s.send(hev.reasoning_chunk(self.turn, "", final=True))

    async def _interrupted(self) -> bool:
        if self.s.control.reason == "stop":
            await self.stopped()
        return False

    async def stopped(self) -> None:
        """Chatflow: a stopped ``workflow_finished`` and no message_end (stop_mid_stream)."""
        if self.turn.workflow_backed:
            finished = ev.workflow_finished(
                self.turn, status="stopped", outputs=self._outputs([]), error="Stopped by user."
            )
            await self.s.send(finished)
        else:
            await self.s.send(ev.message_end(self.turn))

    def _outputs(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        if self.turn.mode == "workflow":
            return {"text": self.text}
        return {"answer": self.text, "files": files}

    async def finish(self, answer: Answer) -> None:
        if answer.end == "none":
            return
        if answer.replace is not None:
            await self.s.send(ev.message_replace(self.turn, answer.replace))
            self.text = answer.replace
            self.on_text(self.text)
        if self.turn.mode == "agent":  # New Agent: the whole answer once more, to replace
            await self.s.send(hev.agent_closing(self.turn, self.text))
        if not self.turn.workflow_backed:
            for given in answer.files:
                await self.s.send(ev.message_file(self.turn, given))
        elif self.progress:
            await self._node_epilogue(answer.files)
        for event in self._closing_events(answer):
            await self.s.send(event)
        if answer.tts:  # trails the closing events
            await self.s.send(hev.tts_message(self.turn, ""))

    def _closing_events(self, answer: Answer) -> list[dict[str, Any]]:
        if self.s.control.aborted and self.turn.mode == "advanced-chat":
            # stop_by_other_user_stream: the answer runs to its end, then the run fails and
            # no message_end comes.
            return [
                ev.workflow_finished(
                    self.turn,
                    status="failed",
                    outputs=self._outputs(answer.files),
                    error="Aborted: User requested stop",
                )
            ]
        return [self._terminal(name, answer) for name in _terminals(self.turn.mode, answer.end)]

    async def _node_epilogue(self, files: list[dict[str, Any]]) -> None:
        sys_vars = ev.sys_inputs(self.turn, finished=True)
        start = ev.node_finished(
            self.turn, self._start_exec, ev.START, inputs=sys_vars, outputs=sys_vars
        )
        await self.s.send(start)
        last, last_exec = (ev.END if self.turn.mode == "workflow" else ev.ANSWER), ev.new_id()
        await self.s.send(ev.node_started(self.turn, last_exec, last))
        inputs = {"text": self.text} if self.turn.mode == "workflow" else {}
        outputs = self._outputs(files)
        await self.s.send(
            ev.node_finished(self.turn, last_exec, last, inputs=inputs, outputs=outputs)
        )

    def _terminal(self, name: str, answer: Answer) -> dict[str, Any]:
        if name == "workflow_finished":
            return ev.workflow_finished(
                self.turn, outputs=self._outputs(answer.files), files=answer.files
            )
        end = ev.message_end(
            self.turn,
            files=answer.files,
            retriever_resources=answer.retriever_resources,
            usage=answer.usage,
        )
        if self.turn.mode == "agent":  # New Agent: usage only, never retriever_resources
            end["metadata"] = {"usage": end["metadata"]["usage"]}
        return end


def _terminals(mode: str, end: str) -> list[str]:
    if mode == "workflow":
        return ["workflow_finished"]
    if mode != "advanced-chat":
        return ["message_end"]
    return {
        "auto": ["message_end", "workflow_finished"],  # 1.13.2 order (turn1_streaming)
        "message_end": ["message_end"],
        "workflow_finished": ["workflow_finished"],
        "workflow_first": ["workflow_finished", "message_end"],  # pre-2026 order
    }[end]


def cycled(chunks: list[str], count: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(chunks or [""]), count))


async def run_answer(gen: Generation, answer: Answer, *, delay: float) -> None:
    await gen.begin(answer.agent_thoughts if gen.turn.mode in ("agent-chat", "agent") else None)
    await gen.reasoning(answer.reasoning)
    gen.tts = list(answer.tts)
    paced = {"delays": answer.delays, "first_delay": answer.first_delay}
    if await gen.deltas(answer.chunks, delay, turnstile=answer.turnstile, **paced):
        await gen.finish(answer)


async def run_cut(gen: Generation, cut: Cut, *, chunks: list[str], delay: float) -> None:
    await gen.begin()
    if await gen.deltas(cycled(cut.chunks or chunks, cut.after), delay) and cut.abrupt:
        gen.s.abort()


async def run_stream_error(
    gen: Generation, err: StreamError, *, chunks: list[str], delay: float
) -> None:
    await gen.begin()
    if await gen.deltas(cycled(err.chunks or chunks, err.after), delay):
        event = ev.error_event(gen.turn, status=err.status, code=err.code, message=err.message)
        await gen.s.send(event)


async def run_failed(stream: SseStream, turn: ev.Turn, failed: FailedRun) -> None:
    if not failed.with_ids:
        turn = replace(turn, synthetic=True, task_id=turn.workflow_run_id)
    await stream.open()
    await stream.ping()
    await stream.send(ev.workflow_started(turn))
    await stream.send(ev.workflow_finished(turn, status="failed", error=failed.error))


async def run_silent(stream: SseStream, hold: float) -> None:
    await stream.open()
    await stream.ping()
    await stream.pause(hold, pings=False)


async def run_replay(stream: SseStream, replay: Replay) -> None:
    captured = load_stream(replay.name)
    await stream.open(status=captured.status, headers=replay_headers(captured.headers))
    loop = asyncio.get_running_loop()
    started, pos = loop.time(), 0
    for offset, size in captured.chunk_timing:
        wait = started + offset / replay.speed - loop.time()
        if replay.timing and wait > 0 and not await stream.pause(wait, pings=False):
            return
        await stream.write(captured.body[pos : pos + size])
        pos += size
    if pos < len(captured.body):
        await stream.write(captured.body[pos:])


async def run_replay_http(stream: SseStream, replay: ReplayHTTP) -> web.StreamResponse:
    captured = load_http(replay.name)
    headers = replay_headers(captured.headers)
    if not captured.content_type.startswith("text/event-stream"):
        return web.Response(
            status=captured.status,
            reason=reason(captured.status),
            body=captured.body or None,
            headers=headers,
        )
    await stream.open(status=captured.status, headers=headers)
    await stream.write(captured.body)
    if captured.body == PING_FRAME:  # err_unknown_conversation.http: the server then says nothing
        await stream.pause(replay.hold, pings=False)
    return stream.response

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


Behaviour = (
    Answer | HttpError | SilentPing | Cut | StreamError | FailedRun | Replay | ReplayHTTP | Stall
)
# Behaviours that need a generation turn (ids, conversation): only on the generate routes.
TURN_BEHAVIOURS = (Answer, Cut, StreamError, FailedRun)

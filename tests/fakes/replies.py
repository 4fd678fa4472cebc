"""A recording Reply and a controllable clock for core tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from bot.contract import ReplyCapabilities
from bot.models import Answer


class JumpingClock:
    """Fake time for code that sleeps between tries (pacers, schedulers): ``sleep`` moves the
    clock at once instead of waiting, and records what was slept."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ManualClock:
    """Monotonic time that moves only on ``advance``; ``sleep`` waits for it, not the wall."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._slept: asyncio.Event | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        if self._slept is not None:
            self._slept.set()
        await future

    async def sleeper(self) -> None:
        """Until someone sleeps on this clock: a loop driven by it has finished its step."""
        while not self.sleeping:
            self._slept = asyncio.Event()
            await self._slept.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward, wake every sleeper that is due, and let them run."""
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)

    @property
    def sleeping(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())


@dataclass
class RecordingReply:
    """Records every call; an optional gate holds ``update`` in flight until released.

    ``fail_updates`` makes that many ``update`` calls raise, ``fail_status``/``fail_start`` every
    ``status``/``start`` call;
    ``cancelled`` counts updates cancelled in flight."""

    capabilities: ReplyCapabilities = field(default_factory=ReplyCapabilities)
    calls: list[tuple[str, str]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail_updates: int = 0
    fail_status: bool = False
    fail_start: bool = False
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    updated: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.calls.append(("start", ""))
        if self.fail_start:
            raise RuntimeError("typing indicator refused")

    async def update(self, text: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.calls.append(("update", text))
            self.updated.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_updates:
                self.fail_updates -= 1
                raise RuntimeError("platform said no")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    async def status(self, text: str) -> None:
        self.calls.append(("status", text))
        if self.fail_status:
            raise RuntimeError("status line refused")

    async def finish(self, text: str, answer: Answer) -> None:
        self.calls.append(("finish", text))
        self.answers.append(answer)
        self.done.set()

    async def fail(self, text: str, notice: str) -> None:
        self.calls.append(("fail", f"{text}|{notice}"))
        self.done.set()

    def of(self, kind: str) -> list[str]:
        return [text for name, text in self.calls if name == kind]

    @property
    def final(self) -> tuple[str, str]:
        """The last finish/fail call."""
        return next(c for c in reversed(self.calls) if c[0] in ("finish", "fail"))

"""How busy this process is, read as event-loop lag, and how much to stretch progress edits for it;
and the garbage collector's settings for a long-running server.

Under overload the first thing to give up is the frequency of interim edits: a user waiting for
the first words, or for the final answer, is hurt by a late event loop; one watching an answer
grow barely notices edits 2 s apart instead of 1 s. Interim edits are also most of the work of a
streaming answer (an edit costs ~1 ms of CPU; Slack's 1 s interval gives 500 edits a second at
500 streams). So ``ProgressiveReply`` multiplies its interval by ``stretch()``: 1 while the loop
is on time, up to ``MAX_STRETCH`` as it falls behind (benchmarks/streaming_load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

TICK = 0.05  # seconds between lag samples
CALM = 0.005  # lag (s) below which nothing is stretched
STEP = 0.02  # each STEP of lag beyond CALM adds one interval
MAX_STRETCH = 4.0
SMOOTHING = 0.3  # weight of the newest sample (EWMA): a single stall does not swing it
# Collect young objects every 10,000 net allocations instead of 700 (gen1/gen2: every 20).
GC_THRESHOLDS = (10_000, 20, 20)


def settle_startup_objects() -> None:
    """Once serving: the modules, apps and clients built at startup live as long as the process,
    so ``gc.freeze`` takes them out of every later collection, and young objects are collected
    less often. Measured with gc callbacks in ``difybot serve`` under benchmarks/streaming_load
    (3,000 short conversations): the collector's time fell from 2.3-3.2 s to 1.1 s a run, and full
    collections, which had paused the event loop for up to 225 ms, now scan only what came
    after startup."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class LoadGauge:
    """A tracked task samples how late ``asyncio.sleep(TICK)`` wakes up."""

    def __init__(self) -> None:
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def observe(self, late: float) -> None:
        """One sample: how many seconds after its time the loop woke a sleeper."""
        self.lag += SMOOTHING * (max(late, 0.0) - self.lag)

    def stretch(self) -> float:
        """The factor for progress-edit intervals now."""
        if self.lag <= CALM:
            return 1.0
        return min(1.0 + (self.lag - CALM) / STEP, MAX_STRETCH)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(TICK)
            self.observe(loop.time() - asked - TICK)

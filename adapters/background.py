"""Background work an adapter owns (any platform): tracked tasks, cancelled and awaited when it
closes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from bot.ops.effort import cancelled

log = logging.getLogger(__name__)


class Background:
    """A set of tasks that outlive the request that started them, but not the adapter."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def close(self) -> None:
        await cancelled(*self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

"""The two places where difybot lets an error go on purpose, named so every such place says so.

``best_effort``: work whose failure must not cost the answer (a "thinking…" status, a saved reply
state, suggested questions, a file an answer links): the failure is logged once, with what was
tried and its traceback, and the answer goes on. ``cancelled``: tasks being stopped, awaited so
nothing outlives its owner; whatever they end with is theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from types import TracebackType
from typing import Any


class best_effort:
    """``with best_effort("show the status line", log): ...`` — an ``Exception`` inside is
    logged at ``level`` and swallowed; cancellation and interpreter exits pass."""

    def __init__(self, what: str, log: logging.Logger, *, level: int = logging.WARNING) -> None:
        self._what = what
        self._log = log
        self._level = level
        self.failed: BaseException | None = None

    def __enter__(self) -> best_effort:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        self.failed = error
        self._log.log(self._level, "could not %s", self._what, exc_info=error)
        return True


async def cancelled(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (those not done) and wait until each has ended, however it ends."""
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    for task in pending:
        with _ended():
            await task


@contextlib.contextmanager
def _ended() -> Iterator[None]:
    """A stopped task's own ending (its CancelledError, or its last error) stays its own."""
    try:
        yield
    except BaseException:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves: that one is not ours to swallow

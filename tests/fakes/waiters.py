"""Futures that a fake resolves when a condition over what it received becomes true, so tests
synchronise on events (``await fake.until(...)``) and never sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Waiters:
    def __init__(self, owner: str) -> None:
        self._owner = owner  # named in the timeout message
        self._waiting: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the fakes' contract)
        what: str = "",
    ) -> None:
        if predicate():
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        except TimeoutError:
            raise TimeoutError(
                f"{self._owner}: no {what or 'condition'} within {timeout} s"
            ) from None
        finally:
            self._waiting.remove(entry)

    def notify(self) -> None:
        """Call after every change a waiter may be waiting for."""
        for predicate, future in self._waiting:
            if not future.done() and predicate():
                future.set_result(None)

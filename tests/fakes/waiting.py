"""Waiting on a fake without sleeping: predicates re-checked whenever the fake says it changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Waiters:
    """``await until(predicate)`` returns once ``notify()`` finds the predicate true."""

    def __init__(self, name: str) -> None:
        self.name = name
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
            message = f"{self.name}: no {what or 'condition'} within {timeout} s"
            raise TimeoutError(message) from None
        finally:
            self._waiting.remove(entry)

    def notify(self) -> None:
        for predicate, future in self._waiting:
            if not future.done() and predicate():
                future.set_result(None)

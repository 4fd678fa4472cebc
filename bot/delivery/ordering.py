"""Arrival order per conversation: each message waits for the one before it, and no more."""

from __future__ import annotations

import asyncio


class ConversationQueues:
    """One chain of futures per conversation key, deleted when its last message leaves.

    ``enter`` (synchronous, so arrival order is call order) returns the future to wait for and
    the one to settle when done. A message cancelled while waiting hands its turn on only when
    its predecessor finishes, so the order holds even then.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._tails)

    def enter(self, key: str) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        return previous, done

    def leave(
        self, key: str, previous: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
        if previous is None or previous.done():
            _settle(done)
        else:
            previous.add_done_callback(lambda _: _settle(done))
        if self._tails.get(key) is done and done.done():
            del self._tails[key]


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)

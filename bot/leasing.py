"""Holding a journal lease while a message waits for its turn and while it is answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from storage.journal import OPEN, Journal

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Lease:
    """One journal entry held by this replica: renewed in the background while held."""

    def __init__(
        self, journal: Journal, entry_id: int, owner: str, *, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.journal = journal
        self.entry_id = entry_id
        self.owner = owner
        self.lost = False
        self._sleep = sleep

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Lease]:
        """Renew the lease every third of its length until the block ends."""
        renewer = asyncio.create_task(self._renew())
        try:
            yield self
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def acquire(self, *, poll: float = 0.2, max_poll: float = 1.0) -> bool:
        """Wait until the entry is ours to answer: True, or False when it is someone else's
        (another replica took it over) or already finished."""
        while True:
            if await self.journal.claim(self.entry_id, self.owner):
                return True
            entry = await self.journal.get(self.entry_id)
            if entry is None or entry.status not in OPEN or entry.owner not in (self.owner, None):
                return False
            # An older message of the conversation is still open, maybe on another replica.
            await self._sleep(poll)
            poll = min(poll * 2, max_poll)

    async def finish(self, *, failed: bool = False) -> None:
        await self.journal.finish(self.entry_id, self.owner, failed=failed)

    async def release(self) -> None:
        """Let another replica take the entry now (this one is shutting down)."""
        with contextlib.suppress(Exception):
            await self.journal.release(self.entry_id, self.owner)

    async def _renew(self) -> None:
        while True:
            await self._sleep(self.journal.lease / 3)
            try:
                if not await self.journal.renew(self.entry_id, self.owner):
                    self.lost = True
                    log.warning("lease on journal entry %d lost to another replica", self.entry_id)
                    return
            except Exception:  # the database hiccuped: try again next round
                log.warning("could not renew lease on entry %d", self.entry_id, exc_info=True)

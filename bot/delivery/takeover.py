"""The sweeper: finishes messages whose replica died or let go, on whichever replica runs it.

A message is taken over through its platform's ``reply`` (the reply rebuilt from where it was
going and what it had shown) and answered again from the start: where some of the answer was
already on screen, the user is told it starts again. This is the one place a taken-over answer
is decided, so a Dify run that can be resumed (resumable runs) continues here instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import StoreError
from bot.models import from_record
from bot.stores import Journal, Membership, State

if TYPE_CHECKING:
    from bot.delivery.inbox import JournalInbox

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600  # sweeps between prunes of finished journal entries (about an hour)
SWEEP_EVERY = 1.0  # seconds: one indexed query; a dead replica's work resumes ~1 s after expiry
DEDUP_WINDOW = 86_400.0  # seconds a finished message's key still drops redeliveries


@dataclass(frozen=True, slots=True)
class Takeover:
    """A journal entry answered after its replica let go; ``shown``: part of its answer was
    already on the user's screen."""

    entry_id: int
    shown: bool = False
    state: State | None = None  # what the earlier attempt's reply saved
    run: State | None = None  # the Dify run the earlier attempt followed (reattached to)


class Sweeper:
    """Every second (half a lease at most): orphans (expired or released leases) are restored
    through their platform and answered here; day-old finished entries are pruned;
    the replica's ``membership`` heartbeat is kept."""

    def __init__(
        self,
        inbox: JournalInbox,
        journal: Journal,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        membership: Membership | None = None,
    ) -> None:
        self._inbox = inbox
        self._journal = journal
        self._sleep = sleep
        self._membership = membership
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        rounds = 0
        while True:
            try:
                await self._beat()
                await self.sweep_once(self._inbox, self._journal)
                if rounds % PRUNE_EVERY == 0:
                    await self._journal.prune(older_than=DEDUP_WINDOW)
            except StoreError:
                log.warning("journal sweep failed; the next one tries again", exc_info=True)
            rounds += 1
            await self._sleep(min(SWEEP_EVERY, self._journal.lease / 2))

    async def _beat(self) -> None:
        if self._membership is not None and not await self._membership.beat():
            log.error("REPLICA_ID %s was taken by another process while this one was silent",
                      self._membership.replica_id)  # fmt: skip

    @staticmethod
    async def sweep_once(inbox: JournalInbox, journal: Journal) -> int:
        taken = 0
        for entry in await journal.orphans(platforms=inbox.restorable):
            if inbox.handles(entry.id):
                continue
            try:
                message = from_record(entry.message)
            except (KeyError, TypeError, ValueError):  # written by an older version, say
                log.exception("cannot read journal entry %d", entry.id)
                continue
            if inbox.resume(entry, message):
                log.info("taking over entry=%d platform=%s", entry.id, entry.platform)
                inbox.metrics.takeovers.labels(entry.platform).inc()
                taken += 1
        return taken

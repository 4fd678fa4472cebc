"""One replica's journal leases: kept alive together, turns handed out together.

Every message this replica recorded or took over is held here from that moment: a single
statement renews all their leases every third of the lease (while they wait for their turn as
much as while they are answered), and a single statement every ``poll`` seconds claims every
waiting message whose turn has come. The database sees two queries per tick, however many
messages are queued; a message per query (one renew task and one poll loop each) exhausted the
connection pool at a few hundred queued messages in the chaos run (benchmarks/chaos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.answering.run import Outcome
from bot.errors import StoreError
from bot.ops.effort import best_effort
from bot.stores import Journal

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class LeaseKeeper:
    def __init__(
        self,
        journal: Journal,
        owner: str,
        *,
        poll: float = 0.25,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.owner = owner
        self.lost: set[int] = set()
        self._poll = poll
        self._sleep = sleep
        self._clock = clock
        self._held: set[int] = set()
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._answering: dict[int, asyncio.Task[object]] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, entry_id: int) -> None:
        """Renew this entry's lease from now on (until ``finish``/``release``)."""
        self._held.add(entry_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def turn(self, entry_id: int) -> bool:
        """Until the entry is claimed for us (True), or is someone else's or finished (False)."""
        self.hold(entry_id)
        if await self.journal.claim(entry_id, self.owner):
            return self._answer_here(entry_id)
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[entry_id] = waiter
        try:
            return self._answer_here(entry_id) if await waiter else False
        finally:
            self._waiting.pop(entry_id, None)

    def _answer_here(self, entry_id: int) -> bool:
        """From now on, losing this lease stops the answer: another replica owns it then."""
        task = asyncio.current_task()
        if task is not None:
            self._answering[entry_id] = task
        return True

    async def answer(self, entry_id: int, answer: Callable[[], Awaitable[Outcome]]) -> None:
        """Answer the entry when its turn comes, holding the lease: finish it afterwards, give
        it back on shutdown (another replica finishes it), skip it if it is not ours."""
        try:
            if not await self.turn(entry_id):
                return  # finished, or taken over by another replica
            outcome = await answer()
        except asyncio.CancelledError:
            await self.release(entry_id)
            raise
        except BaseException:
            self.forget(entry_id)
            raise
        await self.finish(entry_id, failed=outcome is Outcome.FAILED)

    async def finish(self, entry_id: int, *, failed: bool = False) -> None:
        self.forget(entry_id)
        await self.journal.finish(entry_id, self.owner, failed=failed)

    async def release(self, entry_id: int) -> None:
        """Let another replica take the entry now (this one is shutting down)."""
        self.forget(entry_id)
        with best_effort("give a journal entry back (its lease will run out)", log):
            await self.journal.release(entry_id, self.owner)

    def forget(self, entry_id: int) -> None:
        self._held.discard(entry_id)
        self._answering.pop(entry_id, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        renew_every = self.journal.lease / 3
        renewed = self._clock()
        while self._held or self._waiting:
            await self._sleep(self._poll)
            try:
                if self._clock() - renewed >= renew_every:
                    renewed = self._clock()
                    await self._renew()
                if self._waiting:
                    await self._hand_out_turns()
            except StoreError:  # the database hiccuped: the next tick tries again
                log.warning("journal lease upkeep failed", exc_info=True)
            except Exception as exc:  # a bug, not a hiccup: no waiting message may hang on it
                log.exception("journal lease upkeep broke; the messages waiting here fail")
                self._fail_waiting(exc)

    async def _renew(self) -> None:
        held = set(self._held)
        kept = await self.journal.renew_many(held, self.owner)
        for entry_id in held - kept - self.lost:
            if entry_id in self._held:  # not finished meanwhile: another replica took it
                self.lost.add(entry_id)
                self._held.discard(entry_id)
                log.warning("lease on journal entry %d lost: another replica answers it", entry_id)
                answering = self._answering.pop(entry_id, None)
                if answering is not None:
                    answering.cancel()  # two replicas must not both answer

    async def _hand_out_turns(self) -> None:
        waiting = set(self._waiting)
        for entry_id in await self.journal.claim_many(waiting, self.owner):
            self._resolve(entry_id, True)
        for entry_id in await self.journal.not_ours(waiting, self.owner):
            self._held.discard(entry_id)
            self._resolve(entry_id, False)

    def _fail_waiting(self, error: Exception) -> None:
        """Their turns can no longer be told here: each waiting task ends with the error (its
        lease, no longer renewed, runs out and the orphan sweep answers it later)."""
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(error)

    def _resolve(self, entry_id: int, value: bool) -> None:
        waiter = self._waiting.get(entry_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

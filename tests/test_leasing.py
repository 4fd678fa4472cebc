"""LeaseKeeper over the real journal: turns handed out on the poll, a message taken elsewhere let
go, a database hiccup retried, and a bug in the upkeep surfaced instead of hanging the queue."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from bot.delivery.leasing import LeaseKeeper
from bot.errors import StoreError
from storage.journal import Journal
from storage.units import Database
from tests.conftest import FakeClock
from tests.fakes.replies import ManualClock

POLL = 0.25


class WatchedJournal(Journal):
    """The real journal; ``refused[id]`` is set once a claim of that id was refused, which is
    when a turn starts waiting for the keeper's polls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)

    async def claim_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        ids = set(entry_ids)
        claimed = await super().claim_many(ids, owner)
        for entry_id in ids - claimed:
            self.refused[entry_id].set()
        return claimed


class Rig:
    def __init__(self, journal: WatchedJournal) -> None:
        self.journal = journal
        self.ticker = ManualClock()
        self.keeper = LeaseKeeper(
            journal, "A", poll=POLL, sleep=self.ticker.sleep, clock=self.ticker
        )

    async def record(self, key: str) -> int:
        entry_id, new = await self.journal.record(
            key, conversation_key="c1", platform="test", message={}, reply={}, owner="A"
        )
        assert new
        return entry_id

    async def waiting_turn(self, entry_id: int) -> asyncio.Task[bool]:
        """The entry's turn, once it waits for the polls."""
        task = asyncio.create_task(self.keeper.turn(entry_id))
        async with asyncio.timeout(10):
            await self.journal.refused[entry_id].wait()
        assert not task.done()
        return task

    async def tick(self, seconds: float = POLL) -> None:
        """One step of the keeper's loop: until it sleeps, move time, until it sleeps again
        (its database work done)."""
        async with asyncio.timeout(10):
            await self.ticker.sleeper()
            await self.ticker.advance(seconds)
            await self.ticker.sleeper()


async def test_a_waiting_message_gets_its_turn_when_the_older_one_finishes(
    db: Database, clock: FakeClock
) -> None:
    rig = Rig(WatchedJournal(db, clock=clock))
    first, second = await rig.record("m1"), await rig.record("m2")
    assert await rig.keeper.turn(first)
    waiting = await rig.waiting_turn(second)
    await rig.tick()
    assert not waiting.done()  # m1 is still being answered
    await rig.keeper.finish(first)
    await rig.tick()
    assert waiting.done() and waiting.result() is True
    entry = await rig.journal.get(second)
    assert entry is not None and (entry.status, entry.owner) == ("running", "A")
    await rig.keeper.finish(second)
    await rig.keeper.close()


async def test_a_waiting_message_taken_by_another_replica_is_let_go(
    db: Database, clock: FakeClock
) -> None:
    rig = Rig(WatchedJournal(db, lease=30, clock=clock))
    first, second = await rig.record("m1"), await rig.record("m2")
    assert await rig.keeper.turn(first)
    waiting = await rig.waiting_turn(second)
    clock.now += 31  # A stalls; B takes both over and answers them
    for entry in (first, second):
        assert await rig.journal.claim(entry, "B")
        await rig.journal.finish(entry, "B")
    await rig.tick()
    assert waiting.done() and waiting.result() is False
    await rig.keeper.close()


class FlakyJournal(WatchedJournal):
    """The database refuses ``refusals`` claims (a restart, a dropped connection)."""

    refusals = 0

    async def claim_many(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        if self.refusals:
            self.refusals -= 1
            raise StoreError("database: OperationalError: connection reset")  # as storage says it
        return await super().claim_many(entry_ids, owner)


@pytest.mark.allow_warnings(r"^journal lease upkeep failed$")
async def test_a_database_hiccup_is_retried_on_the_next_poll(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = FlakyJournal(db, clock=clock)
    rig = Rig(journal)
    first, second = await rig.record("m1"), await rig.record("m2")
    assert await rig.keeper.turn(first)
    waiting = await rig.waiting_turn(second)
    await rig.keeper.finish(first)
    journal.refusals = 1
    await rig.tick()
    assert not waiting.done()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "journal lease upkeep failed"
    ]
    await rig.tick()
    assert waiting.done() and waiting.result() is True
    await rig.keeper.close()


class BrokenJournal(WatchedJournal):
    """A programming error in the upkeep: not_ours no longer works."""

    async def not_ours(self, entry_ids: Iterable[int], owner: str) -> set[int]:
        raise TypeError("not_ours() broke")


@pytest.mark.allow_warnings(r"^journal lease upkeep broke")
async def test_a_bug_in_the_upkeep_fails_the_waiting_messages_instead_of_hanging_them(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(BrokenJournal(db, lease=30, clock=clock))
    first, second = await rig.record("m1"), await rig.record("m2")
    assert await rig.keeper.turn(first)
    waiting = await rig.waiting_turn(second)
    await rig.tick()
    assert waiting.done()
    with pytest.raises(TypeError, match="not_ours"):
        waiting.result()
    (logged,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert logged.levelname == "ERROR" and logged.exc_info is not None
    assert isinstance(logged.exc_info[1], TypeError)
    clock.now += 5
    await rig.tick(rig.journal.lease / 3)  # it still renews the lease it holds
    entry = await rig.journal.get(first)
    assert entry is not None and entry.lease_until is not None
    assert entry.lease_until.timestamp() == clock.now + 30
    await rig.keeper.close()

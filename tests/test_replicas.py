"""The replica registry: REPLICA_ID survives a restart, but never runs in two live processes."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.models import ConversationKey, IncomingMessage, Scope, to_record
from storage.journal import Journal
from storage.replicas import ReplicaRegistry
from storage.units import Database


class Time:
    """Unix time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        await asyncio.sleep(0)


async def test_a_new_id_is_taken_at_once(db: Database) -> None:
    clock = Time()
    member = await ReplicaRegistry(db, clock=clock, sleep=clock.sleep).join("host-a")
    assert (member.replica_id, member.returning, clock.slept) == ("host-a", False, 0.0)


async def test_a_clean_restart_gets_its_id_back_without_waiting(db: Database) -> None:
    clock = Time()
    registry = ReplicaRegistry(db, clock=clock, sleep=clock.sleep)
    first = await registry.join("host-a")
    await first.leave()
    again = await registry.join("host-a")
    assert (again.replica_id, again.returning, clock.slept) == ("host-a", True, 0.0)
    assert not await first.beat()  # the old process's instance no longer holds the id


async def test_after_a_crash_the_id_is_back_once_its_beat_is_stale(db: Database) -> None:
    clock = Time()
    registry = ReplicaRegistry(db, clock=clock, sleep=clock.sleep)
    await registry.join("host-a")  # ... and the process dies without a word
    clock.now += 1.0
    again = await registry.join("host-a", stale=3.0)
    assert (again.replica_id, again.returning) == ("host-a", True)
    assert 1.9 <= clock.slept <= 2.5  # it waited for the 3 s of silence, no longer


@pytest.mark.allow_warnings("is in use by a running process")
async def test_a_live_holder_keeps_its_id_and_the_newcomer_gets_its_own(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Time()
    registry = ReplicaRegistry(db, clock=clock, sleep=clock.sleep)
    live = await registry.join("host-a")

    async def beating(seconds: float) -> None:  # the live process beats while we wait
        await clock.sleep(seconds)
        await live.beat()

    newcomer = ReplicaRegistry(db, clock=clock, sleep=beating)
    with caplog.at_level(logging.WARNING):
        other = await newcomer.join("host-a")
    assert other.replica_id.startswith("host-a-") and not other.returning
    assert "in use by a running process" in caplog.text
    assert await live.beat() and await other.beat()


async def test_a_returning_replica_gives_back_what_it_left(db: Database) -> None:
    journal = Journal(db, lease=30.0)
    key = ConversationKey("test", "W1", Scope.USER, "U1")
    message = IncomingMessage("test", "W1", "U1", "hi", key, message_id="m1")
    entry, _ = await journal.record(
        "default/test/W1/m1", conversation_key=key.as_str(), platform="test",
        message=to_record(message), reply={}, owner="host-a",
    )  # fmt: skip
    assert await journal.claim(entry, "host-a")
    assert await journal.orphans(platforms=["test", "slack"]) == []  # its lease has 30 s to run
    assert await journal.release_owned("host-a") == 1
    (orphan,) = await journal.orphans(platforms=["test", "slack"])
    assert (orphan.id, orphan.owner, orphan.status) == (entry, None, "pending")

"""Followed threads in the shared store: first owner kept, expiry, prune (SQLite and PostgreSQL)."""

from __future__ import annotations

from storage.threads import FollowedThreads
from storage.units import Database
from tests.conftest import FakeClock


async def test_followed_threads_expire_and_keep_their_first_owner(
    db: Database, clock: FakeClock
) -> None:
    threads = FollowedThreads(db, clock=clock)
    assert await threads.owner("T1/C1:1.1") is None
    await threads.follow("T1/C1:1.1", "U1", ttl=60)
    await threads.follow("T1/C1:1.1", "U2", ttl=120)  # a later answer refreshes, same owner
    assert await threads.owner("T1/C1:1.1") == "U1"
    clock.now += 100
    assert await threads.owner("T1/C1:1.1") == "U1"  # refreshed to 120 s
    clock.now += 30
    assert await threads.owner("T1/C1:1.1") is None
    assert await threads.prune() == 1

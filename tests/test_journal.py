"""The inbound journal on SQLite and PostgreSQL: dedup, leases, ordering, takeover, release."""

from __future__ import annotations

import asyncio

from storage.journal import Journal
from storage.units import Database
from tests.conftest import FakeClock


def journal_for(db: Database, clock: FakeClock, lease: float = 30.0) -> Journal:
    return Journal(db, lease=lease, clock=clock)


async def record(journal: Journal, key: str, conversation: str = "c1", owner: str = "A") -> int:
    entry_id, new = await journal.record(
        key,
        conversation_key=conversation,
        platform="test",
        message={"text": key},
        reply={"channel": "C1"},
        owner=owner,
    )
    assert new
    return entry_id


async def test_a_message_key_is_recorded_once(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock)
    first = await record(journal, "slack/T1/C1:1.1")
    again, new = await journal.record(
        "slack/T1/C1:1.1", conversation_key="c1", platform="test", message={}, reply={}, owner="B"
    )
    assert (again, new) == (first, False)
    entry = await journal.get(first)
    assert entry is not None
    assert (entry.status, entry.owner) == ("pending", "A")
    assert entry.message == {"text": "slack/T1/C1:1.1"}


async def test_concurrent_deliveries_of_one_message_make_one_row(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock)
    results = await asyncio.gather(
        *(
            journal.record(
                "dup", conversation_key="c", platform="t", message={}, reply={}, owner=f"r{i}"
            )
            for i in range(10)
        )
    )
    assert sum(new for _, new in results) == 1
    assert len({entry_id for entry_id, _ in results}) == 1


async def test_claim_waits_for_older_messages_of_the_conversation(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock)
    first = await record(journal, "m1", owner="A")
    second = await record(journal, "m2", owner="B")
    other = await record(journal, "m3", conversation="c2", owner="B")
    assert not await journal.claim(second, "B")  # m1 is still open
    assert await journal.claim(other, "B")  # another conversation is not held up
    assert await journal.claim(first, "A")
    assert not await journal.claim(second, "B")
    await journal.finish(first, "A")
    assert await journal.claim(second, "B")


async def test_a_live_lease_cannot_be_taken_an_expired_one_can(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    entry = await record(journal, "m1", owner="A")
    assert await journal.claim(entry, "A")
    assert not await journal.claim(entry, "B")
    assert await journal.orphans(platforms=["test", "slack"]) == []
    clock.now += 20
    assert await journal.renew(entry, "A")
    clock.now += 20  # 40 s after the claim, 20 s after the renewal: still A's
    assert not await journal.claim(entry, "B")
    clock.now += 11  # A went silent for longer than the lease (it died)
    orphans = await journal.orphans(platforms=["test", "slack"])
    assert [o.id for o in orphans] == [entry]
    assert await journal.claim(entry, "B")
    assert not await journal.renew(entry, "A")  # A, if alive after all, learns it lost
    taken = await journal.get(entry)
    assert taken is not None and (taken.owner, taken.attempts) == ("B", 2)


async def test_release_hands_over_at_once_and_finish_closes(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock)
    entry = await record(journal, "m1", owner="A")
    assert await journal.claim(entry, "A")
    await journal.save_reply_state(entry, {"messages": ["1.5"]})
    await journal.release(entry, "A")
    (orphan,) = await journal.orphans(platforms=["test", "slack"])
    assert orphan.reply_state == {"messages": ["1.5"]} and orphan.owner is None
    assert await journal.claim(entry, "B")
    await journal.finish(entry, "B", failed=True)
    done = await journal.get(entry)
    assert done is not None and done.status == "failed"
    assert not await journal.claim(entry, "C")
    assert await journal.orphans(platforms=["test", "slack"]) == []


async def test_waiting_owner_keeps_its_pending_message(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock, lease=10)
    await record(journal, "m1", owner="A")
    waiting = await record(journal, "m2", owner="A")
    clock.now += 8
    assert await journal.renew(waiting, "A")  # renewed while it waits for m1
    clock.now += 8
    assert [o.message_key for o in await journal.orphans(platforms=["test", "slack"])] == ["m1"]


async def test_prune_forgets_only_old_finished_messages(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock)
    old = await record(journal, "old")
    assert await journal.claim(old, "A")
    await journal.finish(old, "A")
    await record(journal, "open", conversation="c2")
    clock.now += 90_000
    assert await journal.prune(older_than=86_400) == 1
    assert await journal.get(old) is None
    again, new = await journal.record(
        "old", conversation_key="c1", platform="t", message={}, reply={}, owner="A"
    )
    assert new and again != old

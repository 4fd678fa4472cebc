"""The inbound journal on SQLite and PostgreSQL: dedup, leases, ordering, takeover, release."""

from __future__ import annotations

import asyncio

import pytest

from bot.stores import JournalEntry
from storage.journal import Journal
from storage.units import Database
from tests.conftest import FakeClock

PLATFORMS = ["test", "slack", "t"]  # the platforms whose orphans the caller can answer


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
    assert await journal.orphans(platforms=PLATFORMS) == []
    clock.now += 20
    assert await journal.renew(entry, "A")
    clock.now += 20  # 40 s after the claim, 20 s after the renewal: still A's
    assert not await journal.claim(entry, "B")
    clock.now += 11  # A went silent for longer than the lease (it died)
    orphans = await journal.orphans(platforms=PLATFORMS)
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
    (orphan,) = await journal.orphans(platforms=PLATFORMS)
    assert orphan.reply_state == {"messages": ["1.5"]} and orphan.owner is None
    assert await journal.claim(entry, "B")
    await journal.finish(entry, "B", failed=True)
    done = await journal.get(entry)
    assert done is not None and done.status == "failed"
    assert not await journal.claim(entry, "C")
    assert await journal.orphans(platforms=PLATFORMS) == []


async def test_waiting_owner_keeps_its_pending_message(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock, lease=10)
    await record(journal, "m1", owner="A")
    waiting = await record(journal, "m2", owner="A")
    clock.now += 8
    assert await journal.renew(waiting, "A")  # renewed while it waits for m1
    clock.now += 8
    assert [o.message_key for o in await journal.orphans(platforms=PLATFORMS)] == ["m1"]


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


# ---- the lifecycle rules that make an answer effectively-once ----------------------------------
# Each test pins one rule through the Journal's public methods only; tests/mutation/journal_sql.py
# breaks each SQL clause by hand and checks that one of these tests notices.


def lease_end(entry: JournalEntry | None) -> float | None:
    assert entry is not None
    return None if entry.lease_until is None else entry.lease_until.timestamp()


async def test_a_recorded_message_starts_pending_under_its_recorders_lease(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    start = clock.now
    entry_id = await record(journal, "slack/T1/C1:1.1", conversation="conv-9")
    entry = await journal.get(entry_id)
    assert entry is not None
    assert (entry.message_key, entry.conversation_key, entry.platform) == (
        "slack/T1/C1:1.1",
        "conv-9",
        "test",
    )
    assert (entry.reply, entry.reply_state) == ({"channel": "C1"}, None)
    assert (entry.status, entry.owner, entry.attempts) == ("pending", "A", 0)
    assert lease_end(entry) == start + 30
    assert await journal.orphans(platforms=PLATFORMS) == []  # a fresh message is nobody's orphan
    assert not await journal.claim(entry_id, "B")  # the recording replica answers it first
    clock.now += 30  # a lease is good up to and including its last instant
    assert await journal.orphans(platforms=PLATFORMS) == []
    assert not await journal.claim(entry_id, "B")
    clock.now += 0.5
    assert [o.id for o in await journal.orphans(platforms=PLATFORMS)] == [entry_id]


async def test_the_lease_runs_from_the_latest_claim_or_renewal(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    start = clock.now
    entry = await record(journal, "m1")
    clock.now += 25  # claimed late in the lease the recording gave
    assert await journal.claim(entry, "A")
    assert lease_end(await journal.get(entry)) == start + 25 + 30
    clock.now += 20  # 45 s after the recording: the claim's lease still holds
    assert await journal.orphans(platforms=PLATFORMS) == []
    assert not await journal.claim(entry, "B")
    assert await journal.renew(entry, "A")
    assert lease_end(await journal.get(entry)) == start + 45 + 30
    clock.now += 30
    assert not await journal.claim(entry, "B")
    clock.now += 1
    assert await journal.claim(entry, "B")


async def test_a_claim_marks_the_row_running_under_the_claimer(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    entry = await record(journal, "m1", owner="A")
    clock.now += 31  # A died before its first claim
    assert await journal.claim(entry, "B")
    taken = await journal.get(entry)
    assert taken is not None
    assert (taken.status, taken.owner, taken.attempts) == ("running", "B", 1)
    assert await journal.claim(entry, "B")  # claiming again keeps it
    again = await journal.get(entry)
    assert again is not None and (again.owner, again.attempts) == ("B", 2)


@pytest.mark.parametrize("failed", [False, True], ids=["done", "failed"])
async def test_a_finished_message_is_never_taken_again_not_even_by_its_owner(
    db: Database, clock: FakeClock, failed: bool
) -> None:
    """A redelivery, a late poll or a shutdown racing the end of the answer must not reopen it:
    that would answer it twice."""
    journal = journal_for(db, clock)
    entry = await record(journal, "m1")
    assert await journal.claim(entry, "A")
    await journal.finish(entry, "A", failed=failed)
    closed = await journal.get(entry)
    assert closed is not None
    assert (closed.status, closed.owner, closed.attempts) == (
        "failed" if failed else "done",
        "A",
        1,
    )
    assert closed.lease_until is None  # a finished row holds no lease
    assert not await journal.claim(entry, "A")
    assert await journal.claim_many([entry], "A") == set()
    assert not await journal.renew(entry, "A")
    await journal.release(entry, "A")
    clock.now += 3_600
    assert not await journal.claim(entry, "B")
    assert await journal.orphans(platforms=PLATFORMS) == []
    assert await journal.not_ours([entry], "A") == {entry}
    after = await journal.get(entry)
    assert after is not None and after.status == closed.status and after.lease_until is None


async def test_a_replica_that_lost_its_lease_cannot_finish_release_or_renew(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    entry = await record(journal, "m1")
    assert await journal.claim(entry, "A")
    clock.now += 31  # A stalls past its lease; B takes the message over
    assert await journal.claim(entry, "B")
    await journal.finish(entry, "A")  # A wakes up believing it answered
    await journal.release(entry, "A")  # or shuts down
    assert not await journal.renew(entry, "A")
    taken = await journal.get(entry)
    assert taken is not None
    assert (taken.status, taken.owner) == ("running", "B")
    assert lease_end(taken) == clock.now + 30
    assert await journal.not_ours([entry], "A") == {entry}
    assert await journal.not_ours([entry], "B") == set()
    await journal.finish(entry, "B")
    done = await journal.get(entry)
    assert done is not None and done.status == "done"


async def test_release_reopens_the_message_for_anyone_at_once(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock, lease=30)
    entry = await record(journal, "m1")
    assert await journal.claim(entry, "A")
    await journal.release(entry, "A")
    released = await journal.get(entry)
    assert released is not None
    assert (released.status, released.owner, released.lease_until) == ("pending", None, None)
    assert await journal.not_ours([entry], "A") == set()  # nobody's: anyone may claim it
    assert [o.id for o in await journal.orphans(platforms=PLATFORMS)] == [entry]
    assert await journal.claim(entry, "B")  # within what was A's lease


async def test_claims_follow_arrival_order_within_a_conversation_only(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock)
    first = await record(journal, "m1")
    second = await record(journal, "m2")
    third = await record(journal, "m3")
    other = await record(journal, "m4", conversation="c2")
    later_other = await record(journal, "m5", conversation="c2")
    assert await journal.claim_many([third, second, first, later_other, other], "A") == {
        first,
        other,
    }
    await journal.finish(first, "A", failed=True)  # a failed message no longer holds the queue
    assert await journal.claim_many([third, second], "A") == {second}
    await journal.finish(second, "A")
    await journal.finish(other, "A")
    assert await journal.claim_many([third, later_other], "A") == {third, later_other}
    assert await journal.claim_many([], "A") == set()


async def test_renew_many_keeps_only_the_open_rows_we_hold(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock)
    running = await record(journal, "m1")
    assert await journal.claim(running, "A")
    waiting = await record(journal, "m2")  # recorded by A, waits for m1
    theirs = await record(journal, "m3", conversation="c2", owner="B")
    done = await record(journal, "m4", conversation="c3")
    assert await journal.claim(done, "A")
    await journal.finish(done, "A")
    assert await journal.renew_many([running, waiting, theirs, done], "A") == {running, waiting}
    assert await journal.renew_many([], "A") == set()
    untouched = await journal.get(theirs)
    assert untouched is not None and untouched.owner == "B"


async def test_not_ours_names_the_finished_and_the_taken_and_nothing_else(
    db: Database, clock: FakeClock
) -> None:
    journal = journal_for(db, clock)
    running = await record(journal, "m1")
    assert await journal.claim(running, "A")
    waiting = await record(journal, "m2")
    taken = await record(journal, "m3", conversation="c2", owner="B")
    assert await journal.claim(taken, "B")
    done = await record(journal, "m4", conversation="c3")
    failed = await record(journal, "m5", conversation="c4")
    for entry in (done, failed):
        assert await journal.claim(entry, "A")
        await journal.finish(entry, "A", failed=entry == failed)
    released = await record(journal, "m6", conversation="c5")
    await journal.release(released, "A")
    everything = [running, waiting, taken, done, failed, released]
    assert await journal.not_ours(everything, "A") == {taken, done, failed}
    assert await journal.not_ours(everything, "B") == {running, waiting, done, failed}
    assert await journal.not_ours([running, done], "A") == {done}  # only among those asked
    assert await journal.not_ours([], "A") == set()


async def test_prune_keeps_finished_messages_inside_the_dedup_window(
    db: Database, clock: FakeClock
) -> None:
    """A platform may redeliver an hour later: the finished row must still turn it away."""
    journal = journal_for(db, clock)
    entry = await record(journal, "m1")
    assert await journal.claim(entry, "A")
    await journal.finish(entry, "A")
    clock.now += 3_600
    assert await journal.prune(older_than=86_400) == 0
    again, new = await journal.record(
        "m1", conversation_key="c1", platform="test", message={}, reply={}, owner="B"
    )
    assert (again, new) == (entry, False)
    clock.now += 86_400 - 3_600  # exactly at the window's edge: not older than it yet
    assert await journal.prune(older_than=86_400) == 0
    clock.now += 0.5
    assert await journal.prune(older_than=86_400) == 1
    assert await journal.get(entry) is None


async def test_the_dedup_window_runs_from_the_end_of_the_answer(
    db: Database, clock: FakeClock
) -> None:
    """A message answered two hours after it arrived is still deduplicated a day after its answer
    ended, not only a day after it arrived."""
    journal = journal_for(db, clock)
    entry = await record(journal, "m1")
    assert await journal.claim(entry, "A")
    clock.now += 7_200
    await journal.finish(entry, "A")
    clock.now += 86_400 - 60
    assert await journal.prune(older_than=86_400) == 0
    clock.now += 61
    assert await journal.prune(older_than=86_400) == 1


async def test_orphans_come_oldest_first_up_to_the_limit(db: Database, clock: FakeClock) -> None:
    """Oldest message first, not the one whose lease ran out first: a taken-over conversation
    is answered in order."""
    journal = journal_for(db, clock, lease=10)
    ids = [await record(journal, f"m{n}", conversation=f"c{n}") for n in range(4)]
    clock.now += 5
    assert await journal.renew(ids[0], "A")  # the oldest one's lease ends last
    assert await journal.claim(ids[3], "A")
    clock.now += 11
    assert await journal.renew(ids[3], "A")  # still alive: not an orphan
    assert [o.id for o in await journal.orphans(platforms=PLATFORMS, limit=2)] == ids[:2]
    assert [o.id for o in await journal.orphans(platforms=PLATFORMS)] == ids[:3]


async def test_saving_reply_state_touches_only_its_own_row(db: Database, clock: FakeClock) -> None:
    journal = journal_for(db, clock)
    mine = await record(journal, "m1")
    other = await record(journal, "m2", conversation="c2")
    await journal.save_reply_state(mine, {"ts": "1.5", "parts": [1, 2]})
    saved, untouched = await journal.get(mine), await journal.get(other)
    assert saved is not None and saved.reply_state == {"ts": "1.5", "parts": [1, 2]}
    assert untouched is not None and untouched.reply_state is None
    assert await journal.get(other + 1000) is None

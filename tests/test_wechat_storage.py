"""The WeChat family's shared state: access tokens, and an answer's delivery state in its journal
entry (deliveries, parts taken once, the push quota, owed answers), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from adapters.wechat.passive import KEEP_OWED, Delivered, PassiveAnswers
from bot.texts import Texts
from storage.journal import Journal
from storage.tokens import TokenStore
from storage.units import Database
from tests.conftest import FakeClock

PLACE = "wechat/wx/user/u"
TEXTS = Texts("zh", tables=[{"zh": {"wechat_more": "(more)", "wechat_pending": "(pending)"}}])


async def test_tokens_are_shared_replaced_and_discarded_only_if_current(
    db: Database, clock: FakeClock
) -> None:
    one, two = TokenStore(db, clock=clock), TokenStore(db, clock=clock)
    assert await one.get("wechat:wx1") is None
    await one.put("wechat:wx1", "t1", expires_at=clock.now + 7200)
    stored = await two.get("wechat:wx1")
    assert stored is not None and (stored.token, stored.expires_at) == ("t1", clock.now + 7200)
    await two.put("wechat:wx1", "t2", expires_at=clock.now + 100)
    await one.discard("wechat:wx1", "t1")  # stale: t2 replaced it, so nothing is removed
    assert (await one.get("wechat:wx1")).token == "t2"  # type: ignore[union-attr]
    await one.discard("wechat:wx1", "t2")
    assert await two.get("wechat:wx1") is None


async def record(journal: Journal, msg_id: str, place: str = PLACE) -> int:
    entry, new = await journal.record(
        f"default/wechat/wx/{msg_id}",
        conversation_key=f"default/{place}",
        platform="wechat",
        message={},
        reply={"user": place.rsplit("/", 1)[1]},
        owner="r1",
        place=place,
    )
    assert new
    return entry


def answers(journal: Journal, clock: FakeClock) -> PassiveAnswers:
    return PassiveAnswers(journal, text=TEXTS.get, locale="zh", clock=clock)


async def test_concurrent_changes_of_one_state_all_land(db: Database, clock: FakeClock) -> None:
    """Deliveries of one MsgId on several replicas count up: each change is read, changed and
    written under the row's lock."""
    one, two = Journal(db, clock=clock), Journal(db, clock=clock)
    entry = await record(one, "m1")

    def arrive(state: dict[str, object] | None) -> dict[str, object]:
        delivered = Delivered.of(state)
        return Delivered(deliveries=delivered.deliveries + 1).to_state()

    await asyncio.gather(*(journal.change(entry, arrive) for journal in (one, two, one, two)))
    stored = await two.get(entry)
    assert stored is not None and Delivered.of(stored.reply_state).deliveries == 4


async def test_parts_are_taken_once_and_given_back_on_failure(
    db: Database, clock: FakeClock
) -> None:
    journal = Journal(db, clock=clock)
    entry = await record(journal, "m1")
    one, two = answers(journal, clock), answers(Journal(db, clock=clock), clock)
    await one.complete(entry, "u", "a")
    assert await one._take(entry, taken=0)
    assert not await two._take(entry, taken=0)  # a second delivery loses the race
    assert await two._give_back(entry, taken=1, to=0)
    stored = await journal.get(entry)
    assert stored is not None and Delivered.of(stored.reply_state).remaining == ("a",)


async def test_a_completed_answer_is_not_replaced_by_a_second_completion(
    db: Database, clock: FakeClock
) -> None:
    """A replica that takes an entry over after the first one completed it (and died before
    closing it) must not change parts that may already be handed out."""
    journal = Journal(db, clock=clock)
    entry = await record(journal, "m1")
    await answers(journal, clock).complete(entry, "u", "first run")
    await answers(journal, clock).complete(entry, "u", "second run")
    stored = await journal.get(entry)
    assert stored is not None and Delivered.of(stored.reply_state).parts == ("first run",)


async def test_push_quota_is_five_per_user_message_within_48_hours(
    db: Database, clock: FakeClock
) -> None:
    journal = Journal(db, clock=clock)
    passive = answers(journal, clock)
    entry = await record(journal, "m1")
    trigger = await passive._load(entry)
    assert trigger is not None
    spent = [await passive._spend_push(trigger) for _ in range(6)]
    assert spent == [True] * 5 + [False]
    late = await passive._load(await record(journal, "m2"))
    clock.now += 48 * 3600 + 1
    assert late is not None and not await passive._spend_push(late)


async def test_owed_answers_are_found_oldest_first_and_kept_until_fetched(
    db: Database, clock: FakeClock
) -> None:
    journal = Journal(db, clock=clock)
    passive = answers(journal, clock)
    first = await record(journal, "m1")
    clock.now += 1
    running = await record(journal, "m2")
    assert await passive.owed_to(PLACE) is None  # running, and the user was not told
    await passive._mark(running, notified=True)
    assert (await passive.owed_to(PLACE)).id == running  # type: ignore[union-attr]
    await passive.complete(first, "u", "answer")
    assert (await passive.owed_to(PLACE)).id == first  # type: ignore[union-attr]
    assert await passive.owed_to("wechat/wx/user/someone-else") is None
    await passive._take(first, taken=0)  # the user's next message fetched it
    assert (await passive.owed_to(PLACE)).id == running  # type: ignore[union-attr]
    for entry in (first, running):
        await journal.finish(entry, "r1")
    clock.now += 2 * 24 * 3600  # past the journal's day of deduplication
    assert await journal.prune(older_than=24 * 3600) == 1  # the delivered one
    assert await journal.get(running) is not None  # still owed: kept
    clock.now += KEEP_OWED
    assert await journal.prune(older_than=24 * 3600) == 1

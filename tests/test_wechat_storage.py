"""The WeChat family's shared state: access tokens, owed answers, AI bot streams (SQLite and PG)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.tokens import TokenStore
from storage.wechat_answers import PendingAnswers
from storage.wecom_streams import StreamStore
from tests.conftest import FakeClock


async def test_tokens_are_shared_replaced_and_discarded_only_if_current(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    one, two = TokenStore(engine, clock=clock), TokenStore(engine, clock=clock)
    assert await one.get("wechat:wx1") is None
    await one.put("wechat:wx1", "t1", expires_at=clock.now + 7200)
    stored = await two.get("wechat:wx1")
    assert stored is not None and (stored.token, stored.expires_at) == ("t1", clock.now + 7200)
    await two.put("wechat:wx1", "t2", expires_at=clock.now + 100)
    await one.discard("wechat:wx1", "t1")  # stale: t2 replaced it, so nothing is removed
    assert (await one.get("wechat:wx1")).token == "t2"  # type: ignore[union-attr]
    await one.discard("wechat:wx1", "t2")
    assert await two.get("wechat:wx1") is None


async def test_deliveries_of_one_msgid_count_up_and_only_the_first_owns_it(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    store = PendingAnswers(engine, clock=clock)
    rows = await asyncio.gather(*(store.arrive("wechat:wx", "m1", "u") for _ in range(3)))
    assert sorted(r.deliveries for r in rows) == [1, 2, 3]
    assert {r.id for r in rows} == {"wechat:wx:m1"}


async def test_parts_are_taken_once_and_given_back_on_failure(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    store = PendingAnswers(engine, clock=clock)
    row = await store.arrive("wechat:wx", "m1", "u")
    done = await store.complete(row.id, ["a", "b", "c"])
    assert done is not None and done.remaining == ("a", "b", "c") and done.owed
    assert await store.take(row.id, taken=0)
    assert not await store.take(row.id, taken=0)  # a second delivery loses the race
    assert await store.take(row.id, taken=1)
    assert await store.give_back(row.id, taken=2, to=1)
    assert (await store.get(row.id)).remaining == ("b", "c")  # type: ignore[union-attr]


async def test_push_quota_is_five_per_user_message_within_48_hours(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    store = PendingAnswers(engine, clock=clock)
    row = await store.arrive("wechat:wx", "m1", "u")
    spent = [await store.spend_push(row.id, limit=5, window=48 * 3600) for _ in range(6)]
    assert spent == [True] * 5 + [False]
    late = await store.arrive("wechat:wx", "m2", "u")
    clock.now += 48 * 3600 + 1
    assert not await store.spend_push(late.id, limit=5, window=48 * 3600)


async def test_owed_answers_are_found_oldest_first_and_pruned(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    store = PendingAnswers(engine, clock=clock)
    first = await store.arrive("wechat:wx", "m1", "u")
    clock.now += 1
    running = await store.arrive("wechat:wx", "m2", "u")
    assert await store.owed_to("wechat:wx", "u", exclude="x") is None  # running, user not told
    await store.mark(running.id, notified=True)
    assert (await store.owed_to("wechat:wx", "u", exclude="x")).id == running.id  # type: ignore[union-attr]
    await store.complete(first.id, ["answer"])
    assert (await store.owed_to("wechat:wx", "u", exclude="x")).id == first.id  # type: ignore[union-attr]
    assert await store.owed_to("wechat:wx", "someone else", exclude="x") is None
    clock.now += 3 * 24 * 3600
    assert await store.prune(older_than=24 * 3600) == 2


async def test_a_stream_is_joined_by_a_redelivery_and_frozen_once_finished(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    one, two = StreamStore(engine, clock=clock), StreamStore(engine, clock=clock)
    _, created = await one.open("bot:m1", "s1", response_url="https://x/r")
    again, created_again = await two.open("bot:m1", "s2", response_url="https://x/r")
    assert created and not created_again and again.stream_id == "s1"
    await one.write("s1", "Hel")
    assert (await two.get("s1")).content == "Hel"  # type: ignore[union-attr]
    await one.write("s1", "Hello", finished=True)
    await one.write("s1", "late edit")
    final = await two.get("s1")
    assert final is not None and (final.content, final.finished) == ("Hello", True)
    clock.now += 2 * 24 * 3600
    assert await one.prune(older_than=24 * 3600) == 1 and await two.get("s1") is None


async def test_an_answer_running_for_too_long_is_not_owed(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    """Its process died: the user's next message must be a question again, not a fetch."""
    store = PendingAnswers(engine, clock=clock)
    lost = await store.arrive("wechat:wx", "m1", "u")
    await store.mark(lost.id, notified=True)
    clock.now += 1801
    assert await store.owed_to("wechat:wx", "u", exclude="x") is None

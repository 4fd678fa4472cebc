"""The delivery scheduler: shared token buckets (memory, SQLite, PostgreSQL), priorities within
one process and across replicas, 429 pauses, saturation logged once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Limit, Priority, Scheduler
from bot.ops.metrics import Metrics
from bot.stores import Budgets
from storage.budgets import SqlBudgets
from storage.units import Database
from tests.conftest import FakeClock


@pytest.fixture(params=["memory", "sql"])
def budgets(request: pytest.FixtureRequest, db: Database, clock: FakeClock) -> Budgets:
    return MemoryBudgets(clock=clock) if request.param == "memory" else SqlBudgets(db, clock=clock)


async def test_a_bucket_gives_its_burst_then_its_rate(budgets: Budgets, clock: FakeClock) -> None:
    takes = [await budgets.take("k", rate=0.5, burst=3) for _ in range(4)]
    assert takes[:3] == [0.0, 0.0, 0.0]
    assert takes[3] == pytest.approx(2.0)  # one token at 0.5/s
    clock.now += 2.0
    assert await budgets.take("k", rate=0.5, burst=3) == 0.0
    clock.now += 100.0  # refills up to the burst, not beyond
    assert [await budgets.take("k", rate=0.5, burst=3) for _ in range(4)][3] > 0


async def test_a_lower_class_leaves_the_reserve(budgets: Budgets, clock: FakeClock) -> None:
    assert await budgets.take("k", rate=1.0, burst=4, keep=2.0) == 0.0  # 4 → 3
    assert await budgets.take("k", rate=1.0, burst=4, keep=2.0) == 0.0  # 3 → 2
    assert await budgets.take("k", rate=1.0, burst=4, keep=2.0) == pytest.approx(1.0)
    assert await budgets.take("k", rate=1.0, burst=4) == 0.0  # a final takes the reserve
    assert await budgets.take("k", rate=1.0, burst=4) == 0.0
    assert await budgets.take("k", rate=1.0, burst=4) == pytest.approx(1.0)


async def test_a_block_stops_every_take_until_it_lapses(budgets: Budgets, clock: FakeClock) -> None:
    await budgets.block("k", seconds=30.0)
    assert await budgets.take("k", rate=10.0, burst=5) == pytest.approx(30.0)
    clock.now += 30.0
    assert await budgets.take("k", rate=10.0, burst=5) == 0.0


async def test_two_replicas_share_one_bucket(db: Database, clock: FakeClock) -> None:
    first, second = SqlBudgets(db, clock=clock), SqlBudgets(db, clock=clock)
    assert await first.take("k", rate=0.1, burst=2) == 0.0
    assert await second.take("k", rate=0.1, burst=2) == 0.0
    assert await first.take("k", rate=0.1, burst=2) > 0
    assert await second.take("k", rate=0.1, burst=2) > 0


def test_a_per_minute_limit_never_passes_a_rolling_minute() -> None:
    for calls in (1, 20, 50, 100, 300):
        limit = Limit.per_minute(calls)
        assert limit.burst + limit.rate * 60 <= max(calls, limit.burst + 1)
        for priority in Priority:  # every class can take from a full bucket
            assert limit.burst >= limit.keep(priority) + 1


def scheduler(budgets: Budgets, *, per_minute: float = 60, burst: float = 2) -> Scheduler:
    limits = {"edit": (Limit(rate=per_minute / 60, burst=burst),)}
    return Scheduler("chat", budgets, limits, metrics=Metrics())


async def test_a_final_overtakes_queued_lower_calls() -> None:
    team = scheduler(MemoryBudgets(), per_minute=600, burst=1).account("T1")  # one per 0.1 s
    await team.slot("edit", priority=Priority.FINAL)  # spends the bucket
    order: list[str] = []

    async def go(name: str, priority: Priority) -> None:
        await team.slot("edit", priority=priority)
        order.append(name)

    cleanups = [asyncio.create_task(go(f"delete{i}", Priority.CLEANUP)) for i in range(3)]
    await asyncio.sleep(0)  # queued, waiting for the next token
    final = asyncio.create_task(go("final", Priority.FINAL))
    await asyncio.gather(final, *cleanups)
    assert order[0] == "final"


async def test_interim_calls_leave_the_tokens_a_waiting_final_needs() -> None:
    team = scheduler(MemoryBudgets(), per_minute=60, burst=2).account("T1")
    assert await team.now("edit", turn_of="a")
    assert not await team.now("edit", turn_of="b")  # the last token is kept for finals
    assert await team.slot("edit", priority=Priority.FINAL, within=0.0)
    waiting = asyncio.create_task(team.slot("edit", priority=Priority.FINAL))
    await asyncio.sleep(0)
    assert not await team.slot("edit", priority=Priority.FINAL, within=0.1)
    assert await waiting  # the refill went to the final, not to an interim call
    assert not await team.now("edit", turn_of="c")


async def test_a_rate_limit_pauses_the_method_and_the_call_goes_again() -> None:
    budgets = MemoryBudgets()
    limits = {"edit": (Limit(rate=5.0, burst=5),)}
    refusal = RuntimeError("429")
    chat = Scheduler("chat", budgets, limits, rate_limited=lambda e: 0.2 if e is refusal else None)
    team = chat.account("T1")
    calls = 0

    async def run() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise refusal
        return "ok"

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await team.call("edit", run, priority=Priority.FINAL) == "ok"
    assert calls == 2
    assert loop.time() - started >= 0.19  # Retry-After was honoured
    assert not await team.now("edit")  # the 429 emptied the bucket: no interim yet


async def test_saturation_is_logged_once_and_recovery_once(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    chat = Scheduler(
        "chat", MemoryBudgets(clock=clock), {"edit": (Limit(rate=1.0, burst=2),)}, clock=clock
    )
    team = chat.account("T1")
    with caplog.at_level(logging.INFO, logger="bot.delivery.scheduler"):
        for _ in range(20):
            await team.now("edit")
        clock.now += 60
        await team.slot("edit", priority=Priority.FINAL)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("saturated" in line for line in lines) == 1
    assert sum("recovered" in line for line in lines) == 1

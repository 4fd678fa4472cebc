"""LINE on the shared delivery scheduler: the limit table (2,000 requests a second per
endpoint and channel), a 429 pausing the endpoint on every replica, the monthly push quota
never paused nor retried, a loading animation that cannot go in time not shown."""

from __future__ import annotations

import pytest

from adapters.line.api import (
    LOADING,
    MONTHLY_LIMIT,
    PUSH,
    REPLY,
    LineAPIError,
    LinePacer,
    Skipped,
    line_limits,
)
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Priority
from tests.fakes.replies import JumpingClock


def pacers(clock: JumpingClock) -> tuple[LinePacer, LinePacer]:
    """Two replicas of one channel sharing their budgets (as through the database)."""
    budgets = MemoryBudgets(clock=clock)
    first, second = (
        LinePacer(budgets=budgets, channel="c1", clock=clock, sleep=clock.sleep) for _ in "ab"
    )
    return first, second


def test_the_limit_table_stays_under_lines_limits() -> None:
    limits = line_limits()
    assert set(limits) == {REPLY, PUSH, LOADING}
    for (limit,) in limits.values():
        assert not limit.per_channel and limit.burst + limit.rate <= 2000  # any second


async def test_a_429_pauses_the_endpoint_on_every_replica() -> None:
    clock = JumpingClock()
    first, second = pacers(clock)
    sent: list[tuple[str, float]] = []
    refusals = [LineAPIError("The API rate limit has been exceeded.", status=429)]

    async def push() -> str:
        sent.append(("first", clock.now))
        if refusals:
            raise refusals.pop()
        return "ok"

    async def other() -> str:
        sent.append(("second", clock.now))
        return "ok"

    assert await first.run(push, method=PUSH) == "ok"  # again after its pause (base 1 s)
    assert await second.run(other, method=REPLY) == "ok"  # another endpoint: no wait
    assert sent == [("first", 0.0), ("first", 1.0), ("second", 1.0)]

    refusals.append(LineAPIError("The API rate limit has been exceeded.", status=429))
    began = clock.now
    with pytest.raises(LineAPIError):
        await first.run(push, method=PUSH, attempts=1)
    assert await second.run(other, method=PUSH) == "ok"
    assert clock.now - began >= 1.0  # the other replica waited out the refused endpoint


async def test_the_monthly_quota_is_neither_retried_nor_a_pause() -> None:
    clock = JumpingClock()
    first, second = pacers(clock)
    calls = 0

    async def push() -> None:
        nonlocal calls
        calls += 1
        raise LineAPIError(MONTHLY_LIMIT, status=429)

    with pytest.raises(LineAPIError):
        await first.run(push, method=PUSH, retry_unsure=True)
    assert calls == 1

    async def fine() -> str:
        return "ok"

    assert await second.run(fine, method=PUSH) == "ok" and clock.now == 0.0


async def test_a_loading_animation_without_a_slot_in_time_is_skipped() -> None:
    clock = JumpingClock()
    pacer, other = pacers(clock)
    await other.scheduler.account("c1").block(LOADING, 30.0)  # a 429 there, another replica

    async def show() -> None:
        raise AssertionError("not shown")

    with pytest.raises(Skipped):
        await pacer.run(show, method=LOADING, priority=Priority.SIGN_OF_LIFE, within=1.0)
    assert clock.now <= 1.0

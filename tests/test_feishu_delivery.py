"""Feishu on the shared delivery scheduler: the limit table (the gateway's per app and API,
PATCH per message, CardKit per card), a gateway 429 pausing the route on every replica, a
230020 pausing only that message, interim calls now or never."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from adapters.feishu.api import (
    PATCH_TOO_FAST,
    RATE_LIMITED,
    ROUTES,
    FeishuAPIError,
    FeishuPacer,
    Skipped,
    feishu_limits,
)
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Priority
from tests.fakes.replies import JumpingClock


def test_the_limit_table_stays_under_feishus_limits() -> None:
    limits = feishu_limits()
    assert set(limits) == set(ROUTES)
    for route, found in limits.items():
        per_second, per_minute, *per_entity = found
        assert not per_second.per_channel and per_second.burst + per_second.rate <= 50
        assert not per_minute.per_channel and per_minute.burst + per_minute.rate * 60 <= 1000
        assert len(per_entity) == (route in ("im.message.patch", "cardkit.card"))
    (patch,) = limits["im.message.patch"][2:]
    assert patch.per_channel and patch.burst + patch.rate <= 5  # one message: 5 a second
    (card,) = limits["cardkit.card"][2:]
    assert card.per_channel and card.burst + card.rate <= 10  # one card: 10 operations a second


def pacers(clock: JumpingClock) -> tuple[FeishuPacer, FeishuPacer]:
    """Two replicas of one app sharing their budgets (as through the database)."""
    budgets = MemoryBudgets(clock=clock)
    first, second = (
        FeishuPacer(budgets=budgets, app="cli_a", clock=clock, sleep=clock.sleep) for _ in "ab"
    )
    return first, second


async def test_a_gateway_429_pauses_the_route_on_every_replica() -> None:
    clock = JumpingClock()
    first, second = pacers(clock)

    async def refused() -> None:
        raise FeishuAPIError("limit", status=429, code=RATE_LIMITED, retry_after=3.0)

    with pytest.raises(Skipped):  # an interim call refused for rate is not tried again
        await first.run(refused, route="im.message.create", priority=Priority.INTERIM)
    sent: list[float] = []

    async def call() -> str:
        sent.append(clock.now)
        return "ok"

    assert await second.run(call, route="bot.info") == "ok"  # other routes go on
    assert await second.run(call, route="im.message.create") == "ok"
    assert sent == [0.0, 3.0]  # the other replica waited for x-ogw-ratelimit-reset


async def test_a_patch_too_fast_pauses_only_that_message() -> None:
    clock = JumpingClock()
    first, second = pacers(clock)
    tries: list[tuple[str, float]] = []

    def patch(message: str, refuse: int = 0) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            tries.append((message, clock.now))
            if len(tries) <= refuse:
                raise FeishuAPIError("too fast", status=400, code=PATCH_TOO_FAST)

        return call

    await first.run(patch("om_1", refuse=1), route="im.message.patch", channel="om_1")
    await second.run(patch("om_2"), route="im.message.patch", channel="om_2")
    assert tries == [("om_1", 0.0), ("om_1", 1.0), ("om_2", 1.0)]  # retried after its second
    tries.clear()
    await second.run(patch("om_2"), route="im.message.patch", channel="om_2")
    assert tries == [("om_2", 1.0)]  # om_2 never waited for om_1's pause


async def test_interim_patches_go_now_or_never_leaving_the_final_its_token() -> None:
    clock = JumpingClock()
    pacer, _ = pacers(clock)
    sent: list[str] = []

    async def call() -> None:
        sent.append("patch")

    route, channel = "im.message.patch", "om_1"
    await pacer.run(call, route=route, channel=channel, priority=Priority.INTERIM)
    with pytest.raises(Skipped):  # the message's last token is the final's
        await pacer.run(call, route=route, channel=channel, priority=Priority.INTERIM)
    await pacer.run(call, route=route, channel=channel)
    assert sent == ["patch", "patch"] and clock.now == 0.0  # the final did not wait

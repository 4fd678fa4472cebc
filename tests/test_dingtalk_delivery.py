"""DingTalk on the shared delivery scheduler: the limit table (20 QPS per app and API, 20 a
minute per session webhook), a 403 QPS refusal pausing the API on every replica, a session
webhook with no slot now handing over at once, interim card updates now or never."""

from __future__ import annotations

import pytest

from adapters.dingtalk.api import (
    PATHS,
    SESSION,
    DingTalkAPIError,
    DingTalkPacer,
    Skipped,
    dingtalk_limits,
)
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Priority
from tests.fakes.replies import JumpingClock

STREAMING = "/v1.0/card/streaming"


def pacers(clock: JumpingClock) -> tuple[DingTalkPacer, DingTalkPacer]:
    """Two replicas of one app sharing their budgets (as through the database)."""
    budgets = MemoryBudgets(clock=clock)
    first, second = (
        DingTalkPacer(budgets=budgets, app="ding1", clock=clock, sleep=clock.sleep) for _ in "ab"
    )
    return first, second


def test_the_limit_table_stays_under_dingtalks_limits() -> None:
    limits = dingtalk_limits()
    assert set(limits) == {*PATHS, SESSION}
    for path in PATHS:
        (qps,) = limits[path]
        assert not qps.per_channel and qps.burst + qps.rate <= 20  # any second, per app
    (session,) = limits[SESSION]
    assert session.per_channel and session.burst + session.rate * 60 <= 20  # any minute


async def test_a_qps_refusal_pauses_the_api_on_every_replica() -> None:
    clock = JumpingClock()
    first, second = pacers(clock)
    sent: list[tuple[str, float]] = []
    refusals = [DingTalkAPIError("qps", status=403, code="Forbidden.AccessDenied.QpsLimitForApi")]

    async def call() -> str:
        sent.append(("first", clock.now))
        if refusals:
            raise refusals.pop()
        return "ok"

    async def other() -> str:
        sent.append(("second", clock.now))
        return "ok"

    with pytest.raises(Skipped):  # an interim update refused for rate is not tried again
        await first.call(STREAMING, call, priority=Priority.INTERIM)
    assert await second.call(STREAMING, other) == "ok"
    assert sent == [("first", 0.0), ("second", 1.0)]  # the other replica waited the second


async def test_a_session_webhook_without_a_slot_hands_over_at_once() -> None:
    clock = JumpingClock()
    pacer, _ = pacers(clock)

    async def post() -> str:
        return "ok"

    for _ in range(9):  # half the minute at once
        assert await pacer.call(SESSION, post, tries=1, channel="s1") == "ok"
    with pytest.raises(DingTalkAPIError) as refused:
        await pacer.call(SESSION, post, tries=1, channel="s1")
    assert refused.value.throttled and clock.now == 0.0  # the caller sends by the OpenAPI
    assert await pacer.call(SESSION, post, tries=1, channel="s2") == "ok"  # per session


async def test_a_call_without_a_bucket_still_waits_out_its_refusal() -> None:
    clock = JumpingClock()
    pacer, _ = pacers(clock)
    refusals = [DingTalkAPIError("qps", status=403, code="Forbidden.AccessDenied.QpsLimitForApi")]
    tried: list[float] = []

    async def open_connection() -> str:
        tried.append(clock.now)
        if refusals:
            raise refusals.pop()
        return "ok"

    assert await pacer.call("connections/open", open_connection) == "ok"
    assert tried == [0.0, 1.0]

"""Per-workspace Slack budgets: rolling windows, turns for interim calls, held stream stops, and
many replies at once against the fake's enforced tiers without a single 429."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.budget import LIMITS, STREAM_HOLD, WorkspaceBudget
from adapters.slack.reply import Place, ReplyOptions, SlackReply
from adapters.slack.sender import SlackSender
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_tiers import RateTiers
from tests.test_slack_reply import ANSWER, LABELS, Clock


def test_a_window_counts_the_last_minute() -> None:
    clock = Clock()
    budget = WorkspaceBudget(3, clock=clock)
    assert [budget.wait("chat.update") for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 10
    assert budget.wait("chat.update") == 50.0  # the first call leaves the window at 60 s
    clock.now += 50
    assert budget.wait("chat.update") == 0.0


def test_interim_calls_keep_room_for_finals_and_take_turns() -> None:
    clock = Clock()
    budget = WorkspaceBudget(10, clock=clock)  # 2 of 10 kept for finals
    granted = {"a": 0, "b": 0, "c": 0}
    for _ in range(60):
        for reply in granted:
            granted[reply] += budget.interim("chat.update", reply)
        clock.now += 1
    assert sum(granted.values()) == 8
    assert max(granted.values()) - min(granted.values()) <= 1  # fair turns, not first come
    assert budget.wait("chat.update") == 0.0  # a final still goes at once


def test_interim_calls_are_not_rationed_while_there_is_room() -> None:
    clock = Clock()
    budget = WorkspaceBudget(1_000, clock=clock)
    assert all(budget.interim("chat.update", "a") for _ in range(5))  # same instant, no turns


def test_a_stream_starts_only_when_its_stop_can_be_held() -> None:
    clock = Clock()
    budget = WorkspaceBudget(45, clock=clock)
    streams = LIMITS["chat.stopStream"]
    assert all(budget.open_stream() for _ in range(streams))
    assert not budget.open_stream()
    budget.end_stream(stopping=True)  # one stream stops: its stop call counts for a minute
    clock.now += 30
    assert not budget.open_stream()
    budget.end_stream(stopping=False)  # one ended by Slack: its held stop is given back
    clock.now += 31  # and the start window has emptied
    assert budget.open_stream()


def test_a_forgotten_stop_hold_lapses() -> None:
    clock = Clock()
    budget = WorkspaceBudget(45, clock=clock)
    while budget.open_stream():
        pass  # replies that were cancelled never stop their streams
    clock.now += STREAM_HOLD
    assert budget.open_stream()


def test_a_429_pauses_the_method_for_retry_after() -> None:
    clock = Clock()
    budget = WorkspaceBudget(45, clock=clock)
    budget.block("chat.update", 7)
    assert not budget.interim("chat.update", "a")
    assert budget.wait("chat.update") == 7
    assert budget.interim("chat.appendStream", "a")  # other methods are not affected


def test_posts_are_limited_per_channel() -> None:
    clock = Clock()
    budget = WorkspaceBudget(45, clock=clock)
    waits = [budget.wait("chat.postMessage", "C1") for _ in range(55)]
    assert waits[:54] == [0.0] * 54 and waits[54] > 0
    assert budget.wait("chat.postMessage", "C2") == 0.0


async def test_sixty_replies_in_one_workspace_get_no_429() -> None:
    """Half in threads (native streams), half in DMs (edits), answers of a simulated minute,
    against the fake enforcing each tier's floor: every final lands, Slack refuses nothing."""
    clock = Clock()
    async with FakeSlack(clock=clock, update_limit=10**9, tiers=RateTiers(clock=clock)) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        budget = WorkspaceBudget(45, clock=clock)
        replies = []
        for i in range(60):
            thread = f"1.{i}" if i % 2 else None
            place = Place(f"D{i}" if thread is None else "C1", thread, "T0001", f"U{i}")
            sender = SlackSender(client, budget, sleep=clock.sleep)
            options = ReplyOptions(native_streaming=True)
            replies.append(SlackReply(sender, place, labels=LABELS, options=options))
        await asyncio.gather(*(reply.start() for reply in replies))
        text = ""
        for step in range(60):
            text += f"w{step} "
            for reply in replies:
                await reply.update(text)
            clock.now += 1
        await asyncio.gather(*(reply.finish(text, ANSWER) for reply in replies))
        assert slack.limited == []
        finals = [m for m in slack.messages.all.values() if m.body.strip() == text.strip()]
        assert len(finals) == 60
        assert len(slack.calls_to("chat.startStream")) == LIMITS["chat.startStream"]


async def test_a_final_held_back_by_the_edit_budget_is_posted_anew() -> None:
    clock = Clock()
    async with FakeSlack(clock=clock) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        budget = WorkspaceBudget(3, clock=clock)
        deferred: list[Coroutine[Any, Any, None]] = []
        sender = SlackSender(client, budget, sleep=clock.sleep, later=deferred.append)
        place = Place("D1", None, "T0001", "U1", stop_value="user|U1")
        reply = SlackReply(sender, place, labels=LABELS, options=ReplyOptions())
        await reply.start()
        for _ in range(3):  # other replies' finals spent the minute's chat.update budget
            budget.wait("chat.update")
        await reply.finish("the whole answer", ANSWER)
        assert slack.methods() == ["chat.postMessage", "chat.postMessage"]
        assert clock.slept == []  # the answer did not wait for the budget
        (delete,) = deferred  # the stale placeholder goes after the answer, when it may
        await delete
        assert slack.methods()[-1] == "chat.delete"
        (message,) = slack.messages.in_channel("D1")
        assert message.body == "the whole answer" and "dify_stop" not in message.action_ids()

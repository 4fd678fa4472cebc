"""Slack's limits on the delivery scheduler: per-workspace buckets, turns for interim calls,
posts per channel, 429 pauses, and many replies at once against the fake's enforced tiers without
a single 429."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.budget import LIMITS, slack_scheduler
from adapters.slack.reply import Place, ReplyOptions, SlackReply
from adapters.slack.sender import SlackSender
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Account, Priority
from tests.fakes.replies import JumpingClock
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_tiers import RateTiers
from tests.test_slack_reply import ANSWER, LABELS


def workspace(clock: JumpingClock, update_per_minute: int = 45, team: str = "T0001") -> Account:
    """One workspace's account on a scheduler of its own, on the fake clock."""
    budgets = MemoryBudgets(clock=clock)
    scheduler = slack_scheduler(
        budgets, update_per_minute=update_per_minute, clock=clock, sleep=clock.sleep
    )
    return scheduler.account(team)


async def test_interim_calls_keep_room_for_finals_and_take_turns() -> None:
    clock = JumpingClock(1_000.0)
    team = workspace(clock, 10)
    granted = {"a": 0, "b": 0, "c": 0}
    for _ in range(60):
        for reply in granted:
            granted[reply] += await team.now("chat.update", turn_of=reply)
        clock.now += 1
    assert 6 <= sum(granted.values()) <= 10  # never past the minute's budget
    assert max(granted.values()) - min(granted.values()) <= 1  # fair turns, not first come
    assert await team.slot("chat.update", priority=Priority.FINAL, within=0)  # finals still go


async def test_a_429_pauses_the_method_for_retry_after() -> None:
    clock = JumpingClock(1_000.0)
    team = workspace(clock)
    await team.block("chat.update", 7)
    assert not await team.now("chat.update", turn_of="a")
    assert not await team.slot("chat.update", priority=Priority.FINAL, within=6)
    clock.now += 6
    assert await team.slot("chat.update", priority=Priority.FINAL, within=2)
    assert await team.now("chat.appendStream", turn_of="a")  # other methods are not affected


async def test_posts_are_limited_per_channel() -> None:
    clock = JumpingClock(1_000.0)
    team = workspace(clock)
    posts = [await team.now("chat.postMessage", priority=Priority.FINAL, channel="C1")]
    while posts[-1]:
        posts.append(await team.now("chat.postMessage", priority=Priority.FINAL, channel="C1"))
    assert 5 <= len(posts) - 1 <= 54  # a burst, then ~1/s
    assert await team.now("chat.postMessage", priority=Priority.FINAL, channel="C2")


async def test_sixty_replies_in_one_workspace_get_no_429() -> None:
    """Half in threads (native streams), half in DMs (edits), answers of a simulated minute,
    against the fake enforcing each tier's floor: every final lands, Slack refuses nothing."""
    clock = JumpingClock(1_000.0)
    async with FakeSlack(clock=clock, update_limit=10**9, tiers=RateTiers(clock=clock)) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        team = workspace(clock)
        replies = []
        for i in range(60):
            thread = f"1.{i}" if i % 2 else None
            place = Place(f"D{i}" if thread is None else "C1", thread, "T0001", f"U{i}")
            sender = SlackSender(client, team, sleep=clock.sleep)
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
        assert len(slack.calls_to("chat.startStream")) <= LIMITS["chat.startStream"]


async def test_a_final_held_back_by_the_edit_budget_is_posted_anew() -> None:
    clock = JumpingClock(1_000.0)
    async with FakeSlack(clock=clock) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        team = workspace(clock, 3)
        deferred: list[Coroutine[Any, Any, None]] = []
        sender = SlackSender(client, team, sleep=clock.sleep, later=deferred.append)
        place = Place("D1", None, "T0001", "U1", stop_value="user|U1")
        reply = SlackReply(sender, place, labels=LABELS, options=ReplyOptions())
        await reply.start()
        while await team.now("chat.update", priority=Priority.FINAL):
            pass  # other replies' finals spent the chat.update budget
        started = clock.now
        await reply.finish("the whole answer", ANSWER)
        assert slack.methods() == ["chat.postMessage", "chat.postMessage"]
        assert clock.now - started <= 2.5  # the answer did not wait for the edit budget
        (delete,) = deferred  # the stale placeholder goes after the answer, when it may
        await delete
        assert slack.methods()[-1] == "chat.delete"
        (message,) = slack.messages.in_channel("D1")
        assert message.body == "the whole answer" and "dify_stop" not in message.action_ids()


async def test_an_answer_ready_before_its_placeholder_could_go_is_posted_alone() -> None:
    """The workspace's posts are spent: the placeholder waits, the answer arrives, and the
    placeholder is never posted (the answer is, once a post may go)."""
    clock = JumpingClock(1_000.0)
    async with FakeSlack(clock=clock) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        team = workspace(clock)
        while await team.now("chat.postMessage", priority=Priority.FINAL, channel="D1"):
            pass  # other answers spent this DM's posts
        sender = SlackSender(client, team, sleep=clock.sleep)
        place = Place("D1", None, "T0001", "U1", stop_value="user|U1")
        reply = SlackReply(sender, place, labels=LABELS, options=ReplyOptions())
        await reply.start()  # returns at once: the placeholder waits for its slot
        await reply.update("half")  # nothing to edit yet: skipped, not queued
        await reply.finish("the whole answer", ANSWER)
        assert slack.methods() == ["chat.postMessage"]
        (message,) = slack.messages.in_channel("D1")
        assert message.body == "the whole answer"

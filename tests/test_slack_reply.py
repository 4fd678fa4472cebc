"""SlackReply against FakeSlack with a fake clock: budget, 429s, final delivery, fallbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Labels
from adapters.slack.budget import slack_scheduler
from adapters.slack.reply import Place, ReplyOptions, SlackReply
from adapters.slack.sender import SlackSender
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Account
from bot.models import Answer
from tests.fakes.replies import JumpingClock
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

LABELS = Labels("Thinking…", "Stop", "Sources", "Yes", "No", "Ask:")
ANSWER = Answer(message_id="m1", dify_user="slack:T0001:U111")


def workspace(clock: JumpingClock, update_per_minute: int) -> Account:
    """A workspace's account on a scheduler of its own, on the fake clock."""
    budgets = MemoryBudgets(clock=clock)
    scheduler = slack_scheduler(
        budgets, update_per_minute=update_per_minute, clock=clock, sleep=clock.sleep
    )
    return scheduler.account("T0001")


@pytest.fixture
def clock() -> JumpingClock:
    return JumpingClock(1_000.0)


@pytest.fixture
async def slack(clock: JumpingClock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock, update_limit=12) as fake:
        yield fake


def _reply(
    slack: FakeSlack,
    clock: JumpingClock,
    budget: Account,
    *,
    channel: str = "D111",
    thread: str | None = None,
    native: bool = True,
) -> SlackReply:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
    sender = SlackSender(client, budget, sleep=clock.sleep)
    place = Place(channel, thread, "T0001", "U111", stop_value="user|U111")
    options = ReplyOptions(native_streaming=native)
    return SlackReply(sender, place, labels=LABELS, options=options)


async def test_replies_share_the_workspace_budget_and_stay_under_tier_3(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    budget = workspace(clock, 8)
    replies = [_reply(slack, clock, budget, channel=f"D{i}") for i in range(3)]
    for reply in replies:
        await reply.start()
    text = ""
    for step in range(40):
        text += f"word{step} "
        for reply in replies:
            await reply.update(text)
        clock.now += 0.5
    for reply in replies:
        await reply.finish(text, ANSWER)
    updates = [call.at for call in slack.calls if call.method == "chat.update"]
    assert len(updates) <= 12  # never more than the fake's Tier 3 allows: no 429 was needed
    for index in range(3):
        (message,) = slack.messages.in_channel(f"D{index}")
        assert message.body.strip() == text.strip()


async def test_429_pauses_interim_edits_and_a_long_pause_sends_the_final_anew(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    slack.rate_limit("chat.update", times=1, retry_after=30)
    for step in range(10):
        await reply.update("x" * (step + 1))
        clock.now += 1
    assert len(slack.calls_to("chat.update")) == 1  # the rest were skipped, not queued
    await reply.finish("final text", ANSWER)
    assert clock.slept == []  # not 20 s more of waiting: posted anew, the stale one deleted
    assert slack.methods()[-2:] == ["chat.postMessage", "chat.delete"]
    (message,) = slack.messages.in_channel("D111")
    assert message.body == "final text"


async def test_the_final_edit_waits_out_a_short_retry_after(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    slack.rate_limit("chat.update", times=2, retry_after=3)
    await reply.finish("final text", ANSWER)
    assert len(slack.calls_to("chat.update")) == 3
    assert [round(s) for s in clock.slept] == [3, 3]
    (message,) = slack.messages.in_channel("D111")
    assert message.body == "final text" and "chat.delete" not in slack.methods()


@pytest.mark.allow_warnings(r"^final edit refused")
async def test_final_edit_refused_posts_fresh_and_removes_the_stale_message(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    await reply.update("half")
    slack.fail("chat.update", "cant_update_message")
    await reply.finish("whole answer", ANSWER)
    assert slack.methods()[-2:] == ["chat.postMessage", "chat.delete"]
    (message,) = slack.messages.in_channel("D111")
    assert message.body == "whole answer" and "dify_feedback_like" in message.action_ids()


async def test_status_line_shows_while_running_not_in_the_final(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    await reply.update("Looking")
    await reply.status("🔧 web_search…")
    (message,) = slack.messages.in_channel("D111")
    assert "web_search" in message.context() and "dify_stop" in message.action_ids()
    await reply.finish("Found it", Answer(retriever_resources=({"document_name": "guide.md"},)))
    assert "web_search" not in message.context() and "guide.md" in message.context()
    assert message.action_ids() == []  # no Dify message id: no feedback buttons, no Stop


async def test_clearing_the_status_costs_no_edit_of_its_own(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    await reply.update("Looking")
    await reply.status("🔧 web_search…")
    edits = len(slack.calls_to("chat.update"))
    await reply.status("")  # the core clears it just before the final answer
    assert len(slack.calls_to("chat.update")) == edits  # chat.update is rate-limited
    await reply.finish("Found it", ANSWER)
    (message,) = slack.messages.in_channel("D111")
    assert len(slack.calls_to("chat.update")) == edits + 1
    assert "web_search" not in message.context() and message.body == "Found it"


async def test_markdown_blocks_refused_falls_back_to_mrkdwn(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    slack.fail("chat.update", "invalid_blocks")
    await reply.finish("**bold** answer", ANSWER)
    (message,) = slack.messages.in_channel("D111")
    assert message.blocks[0]["type"] == "section" and message.body == "*bold* answer"


async def test_native_stream_replaced_text_moves_to_chat_update(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000), channel="C1", thread="1.1")
    await reply.start()
    await reply.update("draft answer")
    await reply.update("moderated")  # Dify replaced the answer: a stream cannot take words back
    await reply.finish("moderated", ANSWER)
    assert slack.methods().count("chat.stopStream") == 1
    (message,) = slack.messages.in_channel("C1", "1.1")
    assert message.body == "moderated" and not message.streaming


async def test_rate_limited_append_is_sent_with_the_next_one(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000), channel="C1", thread="1.1")
    await reply.start()
    slack.rate_limit("chat.appendStream")
    await reply.update("one ")
    await reply.update("one two")
    await reply.finish("one two three", ANSWER)
    (message,) = slack.messages.in_channel("C1", "1.1")
    assert message.body == "one two three"
    assert "dify_feedback_like" in message.action_ids()


async def test_interim_edits_escape_the_fallback_text_and_the_final_converts_it(
    slack: FakeSlack, clock: JumpingClock
) -> None:
    reply = _reply(slack, clock, workspace(clock, 1_000))
    await reply.start()
    await reply.update("**bold** <!here>")
    await reply.finish("**bold** <!here> done", ANSWER)
    interim, final = (args["text"] for args in slack.calls_to("chat.update"))
    assert interim == "**bold** &lt;!here&gt;"  # never a live @here, even for a moment
    assert final == "*bold* &lt;!here&gt; done"

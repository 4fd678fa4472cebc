"""Buttons end to end: feedback, Stop while streaming, suggested questions, opening statement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.dify import Answer
from tests.fakes.dify_wire import load_json
from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import click, dm, event_body, mention

MENTION_TS = "1700000100.000100"


def _params(**changes: Any) -> dict[str, Any]:
    return {**load_json("parameters"), **changes}


async def test_feedback_buttons_rate_the_answer_in_dify(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        await bot.event(dm("rate me", ts="1700000020.000020"))
        await bot.answered()
        (message,) = bot.slack.messages.in_channel("D111")
        value = message.blocks[-1]["elements"][1]["value"]
        await bot.click(
            click("dify_feedback_dislike", value, channel="D111", message_ts=message.ts)
        )
        (feedback,) = await bot.dify.wait_for("/messages/{}/feedbacks".format(value.split("|")[0]))
        assert feedback.json == {"rating": "dislike", "user": "slack:T0001:U111"}
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert note["user"] == "U111" and "Thanks" in note["text"]


async def test_stop_button_stops_the_running_answer(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack_native_streaming=False) as bot:
        slow = Answer(chunks=["partial", *[" more"] * 200], delay=0.05)
        bot.dify.enqueue("/chat-messages", slow)
        await bot.event(mention("long one", ts=MENTION_TS))
        await bot.slack.wait_for("chat.update", 1)
        placeholder = bot.slack.messages.in_channel("C111", MENTION_TS)[0]
        stop = next(b for b in placeholder.blocks if b.get("block_id") == "dify_stop")
        value = stop["elements"][0]["value"]
        await bot.click(click("dify_stop", value, channel="C111", message_ts=placeholder.ts,
                              thread_ts=MENTION_TS))  # fmt: skip
        await bot.answered()
        assert len(bot.dify.stops) == 1
        (answer,) = bot.slack.messages.in_channel("C111", MENTION_TS)
        assert answer.body.startswith("partial") and answer.body.endswith("_(Stopped.)_")
        assert "dify_stop" not in answer.action_ids()
        assert "chat.postEphemeral" not in bot.slack.methods()


async def test_stop_with_nothing_running_says_so(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        body = click("dify_stop", "user|U111", channel="D111", message_ts="1700000030.000030")
        await bot.click(body)
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert "no answer running" in note["text"]


async def test_suggested_questions_are_offered_and_asked(tmp_path: Path) -> None:
    params = _params(suggested_questions_after_answer={"enabled": True})
    async with slack_bot(tmp_path, dify={"parameters": params}) as bot:
        await bot.event(mention("teach me", ts=MENTION_TS))
        await bot.answered(1)
        await bot.slack.until(lambda: len(bot.slack.messages.in_channel("C111", MENTION_TS)) == 2)
        offer = bot.slack.messages.in_channel("C111", MENTION_TS)[1]
        assert offer.action_ids() == ["dify_ask_0", "dify_ask_1", "dify_ask_2"]
        question = offer.blocks[1]["elements"][0]["value"]
        await bot.click(click("dify_ask_0", question, channel="C111", message_ts=offer.ts,
                              thread_ts=MENTION_TS, user="U333"))  # fmt: skip
        await bot.answered(2)
        first, second = (r.json for r in bot.dify.requests_to("/chat-messages"))
        assert second["query"] == question
        assert second["conversation_id"] and second["user"] == first["user"]


async def test_opening_statement_greets_a_first_visit_once(tmp_path: Path) -> None:
    params = _params(
        opening_statement="Hi! I know **Dify**.", suggested_questions=["What can you do?"]
    )
    async with slack_bot(tmp_path, dify={"parameters": params}) as bot:
        await bot.event(event_body("event_app_home_opened"))
        (greeting,) = await bot.slack.wait_for("chat.postMessage")
        assert greeting["channel"] == "D111"
        assert greeting["blocks"][0] == {"type": "markdown", "text": "Hi! I know **Dify**."}
        assert "dify_ask_0" in str(greeting["blocks"])
        await bot.event(event_body("event_app_home_opened"))
        await bot.event(dm("hello", ts="1700000040.000040"))
        await bot.answered()
        assert len(bot.slack.calls_to("conversations.history")) == 1
        assert bot.slack.calls_to("chat.postMessage")[1]["channel"] == "D111"
        assert "Hi! I know" not in str(bot.slack.calls_to("chat.postMessage")[1:])

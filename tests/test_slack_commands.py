"""``/dify`` end to end: member channels, channels the bot is not in, help and new."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import command, dm, thread_reply


async def test_command_in_a_member_channel_answers_in_a_thread_it_then_follows(
    tmp_path: Path,
) -> None:
    async with slack_bot(tmp_path) as bot:
        ack = await bot.command(command("what is Dify?", channel="C111"))
        assert not (ack.get("payload") or {}).get("text")  # an empty ack: nothing ephemeral
        await bot.answered(1)
        question = bot.slack.calls_to("chat.postMessage")[0]
        assert question["channel"] == "C111" and "what is Dify?" in str(question["blocks"])
        root = bot.slack.messages.in_channel("C111")[0].ts
        (answer,) = bot.slack.messages.in_channel("C111", root)
        assert answer.body == "echo: what is Dify?"
        await bot.event(thread_reply("more", ts="1700000900.000900", thread_ts=root, parent="UBOT"))
        await bot.answered(2)
        first, second = (r.json for r in bot.dify.requests_to("/chat-messages"))
        assert second["conversation_id"] and second["user"] == first["user"] == "slack:T0001:U111"


async def test_command_where_the_bot_is_not_a_member_answers_through_response_url(
    tmp_path: Path,
) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.slack.not_member.add("C999")
        body = command("private question", channel="C999", response_url=bot.slack.response_url())
        await bot.command(body)
        await bot.answered(1)
        await bot.slack.until(lambda: len(bot.slack.responses) == 2, what="two responses")
        thinking, answer = bot.slack.responses
        assert thinking["response_type"] == "ephemeral" and "Thinking" in thinking["text"]
        assert answer["response_type"] == "in_channel"
        assert "echo: private question" in str(answer["blocks"])
        assert "<@U111>" in str(answer["blocks"])


async def test_help_and_new(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        ack = await bot.command(command("help", channel="D111"))
        assert "/dify new" in ack["payload"]["text"]
        await bot.event(dm("remember me", ts="1700000010.000010"))
        await bot.answered(1)
        ack = await bot.command(command("new", channel="D111"))
        assert ack["payload"]["text"] == "Started a new conversation."
        await bot.event(dm("fresh start", ts="1700000011.000011"))
        await bot.answered(2)
        assert not bot.dify.requests_to("/chat-messages")[1].json.get("conversation_id")


async def test_command_in_the_bots_dm_continues_the_dm_conversation(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        await bot.event(dm("first", ts="1700000012.000012"))
        await bot.answered(1)
        await bot.command(command("second", channel="D111"))
        await bot.answered(2)
        assert bot.dify.requests_to("/chat-messages")[1].json.get("conversation_id")

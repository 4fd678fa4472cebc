"""End to end over Socket Mode: the real app and bolt handler against FakeSlack and FakeDify."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import Answer
from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import dm, event_body, mention, thread_reply

MENTION_TS = "1700000100.000100"


async def test_dm_is_answered_top_level_by_editing_a_placeholder(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.dify.enqueue("/chat-messages", Answer(chunks=["Hello", " **there**"], delay=0.02))
        ack = await bot.event(dm("hi &amp; bye <https://dify.ai|Dify>", ts="1700000001.000001"))
        assert not ack.get("payload")
        await bot.answered()
        query = bot.dify.requests_to("/chat-messages")[0].json
        assert query["query"] == "hi & bye Dify (https://dify.ai)"
        assert query["user"] == "slack:T0001:U111"
        placeholder = bot.slack.calls_to("chat.postMessage")[0]
        assert placeholder["channel"] == "D111" and "thread_ts" not in placeholder
        assert "Thinking…" in placeholder["text"]  # the sign of life, before any answer text
        assert "dify_stop" in str(placeholder["blocks"])
        assert "chat.startStream" not in bot.slack.methods()  # plain DMs stay top level
        (message,) = bot.slack.messages.in_channel("D111")
        assert message.body == "Hello **there**"
        assert message.action_ids() == ["dify_feedback_like", "dify_feedback_dislike"]
        # Both tokens are tried once at start (a refused one stops it); Socket Mode's URL came
        # from SLACK_API_URL too (the fake), with the app token.
        opening = ["auth.test", "apps.connections.open", "apps.connections.open"]
        assert bot.slack.methods()[:3] == opening
        assert bot.slack.socket.connections == 1


async def test_dm_conversation_continues_per_user(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        await bot.event(dm("one", ts="1700000001.000001"))
        await bot.answered(1)
        await bot.event(dm("two", ts="1700000002.000002"))
        await bot.answered(2)
        first, second = (r.json for r in bot.dify.requests_to("/chat-messages"))
        assert not first.get("conversation_id")
        assert second["conversation_id"] and second["user"] == first["user"]


async def test_mention_streams_natively_in_a_thread_then_follows_it(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        await bot.event(mention("what is Dify?", ts=MENTION_TS))
        # The same post also arrives as a plain message event: left to the mention.
        await bot.event(event_body("event_message_channel_mention", ts=MENTION_TS))
        await bot.answered(1)
        status = bot.slack.calls_to("assistant.threads.setStatus")[0]
        assert status["thread_ts"] == MENTION_TS and status["status"] == "Thinking…"
        start = bot.slack.calls_to("chat.startStream")[0]
        assert start["thread_ts"] == MENTION_TS
        assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U111", "T0001")
        assert "chat.update" not in bot.slack.methods()
        (answer,) = bot.slack.messages.in_channel("C111", MENTION_TS)
        assert answer.body == "echo: what is Dify?"
        assert "dify_feedback_like" in answer.action_ids()

        # Someone else follows up in the thread, no mention: same conversation, same Dify user.
        await bot.event(thread_reply("and then?", ts="1700000300.000300", thread_ts=MENTION_TS))
        await bot.answered(2)
        first, second = (r.json for r in bot.dify.requests_to("/chat-messages"))
        assert second["query"] == "and then?"
        assert second["conversation_id"] and second["user"] == first["user"] == "slack:T0001:U111"
        assert len(bot.slack.messages.in_channel("C111", MENTION_TS)) == 2


async def test_channel_messages_outside_followed_threads_are_ignored(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        top = event_body("event_message_thread_reply", ts="1700000700.000700", thread_ts=None)
        del top["event"]["thread_ts"]
        await bot.event(top)
        await bot.event(thread_reply("not ours", ts="1700000701.000701", thread_ts="1699.000001"))
        await bot.event(event_body("event_message_changed"))
        await bot.event(event_body("event_message_bot"))
        await bot.event(dm("counted", ts="1700000702.000702"))
        await bot.answered(1)
        assert [r.json["query"] for r in bot.dify.requests_to("/chat-messages")] == ["counted"]


async def test_other_bots_are_answered_when_allowed(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack_allow_bots=True) as bot:
        await bot.event(event_body("event_message_bot"))
        await bot.answered(1)
        assert bot.dify.requests_to("/chat-messages")[0].json["user"] == "slack:T0001:BOTHER"


async def test_a_retried_event_is_answered_once(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        body = dm("once", ts="1700000003.000003")
        await bot.event(body)
        await bot.event(body, retry=1)
        await bot.event(dm("after", ts="1700000004.000004"))
        await bot.answered(2)
        assert [r.json["query"] for r in bot.dify.requests_to("/chat-messages")] == [
            "once",
            "after",
        ]


async def test_dm_threads_setting_answers_under_the_question(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack_dm_threads=True) as bot:
        await bot.event(dm("threaded", ts="1700000005.000005"))
        await bot.answered()
        assert bot.slack.calls_to("chat.startStream")[0]["thread_ts"] == "1700000005.000005"


async def test_a_thread_followed_on_one_replica_is_followed_on_another(tmp_path: Path) -> None:
    """Socket Mode spreads events over every replica: a follow-up may reach one that never
    saw the mention. Followed threads are shared through the database."""
    async with slack_bot(tmp_path) as first:
        await first.event(mention("start here", ts=MENTION_TS))
        await first.answered()
    async with slack_bot(tmp_path) as second:  # the same database, a fresh process's memory
        await second.event(thread_reply("and then?", ts="1700000300.000300", thread_ts=MENTION_TS))
        await second.event(thread_reply("ignored", ts="1700000301.000301", thread_ts="1699.1"))
        await second.event(dm("done", ts="1700000302.000302"))
        await second.answered(2)
        asked = [r.json for r in second.dify.requests_to("/chat-messages")]
        # (This fake Dify never saw the first replica's conversation: asked again, fresh.)
        assert {a["query"] for a in asked} == {"and then?", "done"}
        # The thread's conversation keeps the Dify user of whoever started it.
        assert all(a["user"] == "slack:T0001:U111" for a in asked if a["query"] == "and then?")
        assert second.slack.messages.in_channel("C111", MENTION_TS)  # answered in the thread

"""Streaming end to end: native-stream fallbacks, long answers, 429 storms, msg_too_long."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import Answer
from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import dm, mention

MENTION_TS = "1700000100.000100"


async def test_unsupported_native_streaming_falls_back_to_edits(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack={"native_streaming": False}) as bot:
        bot.dify.enqueue("/chat-messages", Answer(chunks=["a", "b", "c"], delay=0.02))
        await bot.event(mention("fallback", ts=MENTION_TS))
        await bot.answered()
        assert bot.slack.methods().count("chat.startStream") == 1
        placeholder = bot.slack.calls_to("chat.postMessage")[0]
        assert placeholder["thread_ts"] == MENTION_TS
        (answer,) = bot.slack.messages.in_channel("C111", MENTION_TS)
        assert answer.body == "abc" and "dify_feedback_like" in answer.action_ids()


async def test_expired_stream_is_fixed_with_chat_update(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.slack.stream_appends_before_expiry = 1
        chunks = ["one ", "two ", "three ", "four"]
        bot.dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.03))
        await bot.event(mention("expire", ts=MENTION_TS))
        await bot.answered()
        assert "chat.appendStream" in bot.slack.methods()
        (answer,) = bot.slack.messages.in_channel("C111", MENTION_TS)
        assert answer.body == "one two three four"
        assert not answer.streaming and "dify_feedback_like" in answer.action_ids()


async def test_long_answer_continues_in_follow_ups_never_mid_code_block(tmp_path: Path) -> None:
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40
    code = "```python\n" + "print('x')\n" * 300 + "```"
    text = "\n\n".join([paragraph] * 6 + [code] + [paragraph] * 6)
    chunks = [text[i : i + 2000] for i in range(0, len(text), 2000)]
    async with slack_bot(tmp_path) as bot:
        bot.dify.enqueue("/chat-messages", Answer(chunks=chunks))
        await bot.event(dm("long", ts="1700000060.000060"))
        await bot.answered()
        first, *rest = bot.slack.messages.in_channel("D111")
        follow_ups = bot.slack.messages.in_channel("D111", first.ts)
        parts = [first, *follow_ups]
        assert rest == [] and len(parts) >= 3
        for part in parts:
            assert len(part.body) <= 12_000 and part.body.count("```") % 2 == 0
        assert "dify_feedback_like" in parts[-1].action_ids()
        assert all("dify_feedback_like" not in p.action_ids() for p in parts[:-1])
        joined = "".join(p.body for p in parts)
        assert joined.count("print('x')") == 300


async def test_final_answer_survives_a_429_storm(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack={"retry_after": 1}) as bot:
        bot.slack.rate_limit("chat.update", times=2)
        bot.dify.enqueue("/chat-messages", Answer(chunks=["x"] * 20, delay=0.01))
        await bot.event(dm("storm", ts="1700000070.000070"))
        await bot.answered()
        updates = bot.slack.calls_to("chat.update")
        # The first 429 pauses interim edits for Retry-After: none are queued behind it.
        assert len(updates) <= 6
        (message,) = bot.slack.messages.in_channel("D111")
        assert message.body == "x" * 20


async def test_msg_too_long_splits_smaller(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, slack_native_streaming=False) as bot:
        bot.slack.max_chars = 5_000
        text = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(12))
        bot.dify.enqueue("/chat-messages", Answer(chunks=[text]))
        await bot.event(dm("big", ts="1700000080.000080"))
        await bot.answered()
        first = bot.slack.messages.in_channel("D111")[0]
        parts = [first, *bot.slack.messages.in_channel("D111", first.ts)]
        assert all(len(p.body) <= 5_000 for p in parts)
        assert " ".join(p.body for p in parts).split() == text.split()


async def test_tool_status_shows_while_running_and_sources_end_the_answer(tmp_path: Path) -> None:
    async with slack_bot(
        tmp_path, dify={"mode": "agent-chat"}, slack_native_streaming=False
    ) as bot:
        answer = Answer(
            chunks=["Found ", "it"],
            delay=0.05,
            agent_thoughts=[{"tool": "web_search", "tool_input": "{}"}],
            retriever_resources=[{"document_name": "handbook.pdf", "score": 0.9}],
        )
        bot.dify.enqueue("/chat-messages", answer)
        await bot.event(dm("search", ts="1700000090.000090"))
        await bot.answered()
        interim = [str(call["blocks"]) for call in bot.slack.calls_to("chat.update")[:-1]]
        assert any("web_search" in blocks for blocks in interim)
        (message,) = bot.slack.messages.in_channel("D111")
        assert message.body == "Found it"
        assert "web_search" not in message.context() and "handbook.pdf" in message.context()


async def test_native_stream_shows_tool_status_as_thread_status(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify={"mode": "agent-chat"}) as bot:
        answer = Answer(chunks=["ok"], delay=0.05, agent_thoughts=[{"tool": "calculator"}])
        bot.dify.enqueue("/chat-messages", answer)
        await bot.event(mention("compute", ts=MENTION_TS))
        await bot.answered()
        statuses = [call["status"] for call in bot.slack.calls_to("assistant.threads.setStatus")]
        assert statuses[0] == "Thinking…" and "🔧 calculator…" in statuses
        (message,) = bot.slack.messages.in_channel("C111", MENTION_TS)
        assert message.body == "ok"

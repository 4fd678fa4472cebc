"""End to end: difybot as ``serve`` builds it, against the fake Bot API and the fake Dify.

Flood limits are the fake's defaults (1 message or edit per second per chat with bursts of 3,
20 a minute in a group, drafts on their own 1 per second), so every test that streams also
asserts that Telegram never had to answer 429.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram_html import parse_html
from tests.fakes.wechat_app import Running, difybot
from tests.test_observability import scrape, value

SECRET = "wh-secret_0123456789"


def settings(tg: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {"telegram_bot_token": tg.token, "telegram_api_base": tg.base_url, **extra}


async def answered(tg: FakeTelegram, running: Running, chat_id: int) -> None:
    """Until an answer with its buttons is shown in the chat and nothing is left running."""
    await tg.until(lambda: any(m.reply_markup for m in tg.state.sent_by_bot(chat_id)), 10)
    await running.core.inbox.idle()


@asynccontextmanager
async def telegram_bot(
    dify: FakeDify, tg: FakeTelegram, tmp_path: Path, **extra: Any
) -> AsyncIterator[Running]:
    async with difybot(dify, tmp_path / "db", **settings(tg, **extra)) as running:
        yield running


async def test_a_private_question_streams_as_a_draft_then_one_message(
    dify: FakeDify, tmp_path: Path
) -> None:
    chunks = ["**Dify** ", "is an ", "LLM app ", "platform."]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.4))
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "What is Dify?")
        await answered(tg, running, chat.id)
        (answer,) = tg.state.sent_by_bot(chat.id)
        drafts = [d for d in tg.state.drafts.values() if d.chat_id == chat.id]
    assert answer.text == "Dify is an LLM app platform."
    assert answer.entities == [{"type": "bold", "offset": 0, "length": 4}]
    assert len(drafts) == 1 and len(drafts[0].frames) >= 2  # the answer grew in the draft
    assert drafts[0].frames[-1] in answer.text
    assert tg.calls_to("editMessageText") == []
    assert tg.rate_limited == []
    assert tg.calls_to("sendChatAction")[0].args["action"] == "typing"
    assert dify.requests_to("/chat-messages")[0].json["query"] == "What is Dify?"


async def test_without_drafts_the_answer_is_one_message_edited_within_flood_limits(
    dify: FakeDify, tmp_path: Path
) -> None:
    chunks = [f"Part {n}. " for n in range(12)]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.15))
    async with (
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path, telegram_drafts=False) as running,
    ):
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "count")
        await answered(tg, running, chat.id)
        (answer,) = tg.state.sent_by_bot(chat.id)
    assert answer.text == "".join(chunks).strip()
    assert len(answer.history) >= 2  # shown growing, then final
    assert tg.calls_to("sendMessageDraft") == []
    assert tg.rate_limited == []
    assert all(c.ok for c in tg.calls_to("editMessageText"))  # none "message is not modified"
    edits = [c.at for c in tg.calls_to("editMessageText")]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(edits))


async def test_drafts_refused_fall_back_to_edits(dify: FakeDify, tmp_path: Path) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["one ", "two ", "three"], delay=0.4))
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        tg.fail_next("sendMessageDraft", 404, "Not Found: method not found")
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "hi")
        await answered(tg, running, chat.id)
        (answer,) = tg.state.sent_by_bot(chat.id)
    assert answer.text == "one two three"
    assert len(tg.calls_to("sendMessageDraft")) == 1  # refused once, never tried again
    assert tg.rate_limited == []


async def test_commands_are_the_bots_own(dify: FakeDify, tmp_path: Path) -> None:
    dify.parameters["opening_statement"] = "Hi, I answer questions about Dify."
    dify.parameters["suggested_questions"] = ["What is RAG?", "How do I deploy?"]
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "/start")
        await tg.wait_for("sendMessage", 1)
        tg.inbound.text(chat, "remember me")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) >= 2, 10)
        await running.core.inbox.idle()
        tg.inbound.text(chat, "/new")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) >= 3)
        tg.inbound.text(chat, "/help")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) >= 4)
        tg.inbound.text(chat, "again")
        await dify.wait_for("/chat-messages", 2)
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) >= 5, 10)
        await running.core.inbox.idle()
        shown = tg.state.sent_by_bot(chat.id)
        commands = tg.state.commands
    welcome = shown[0]
    assert welcome.text == "Hi, I answer questions about Dify."
    assert [b["text"] for b in welcome.buttons()] == ["What is RAG?", "How do I deploy?"]
    assert shown[2].text == "Started a new conversation."
    assert "/new" in (shown[3].text or "")
    queries = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert queries == ["remember me", "again"]  # no command reached Dify
    _first, second = dify.requests_to("/chat-messages")
    assert second.json.get("conversation_id", "") == ""  # /new: a fresh conversation
    assert {c["command"] for c in next(iter(commands.values()))} == {"new", "help", "ask"}


async def test_group_mention_is_answered_as_a_reply_and_chatter_is_ignored(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeTelegram(privacy=False) as tg, telegram_bot(dify, tg, tmp_path) as running:
        group = tg.inbound.group()
        tg.inbound.text(group, "just chatting among ourselves")
        tg.inbound.text(group, "@dify_fake_bot what is RAG?")
        await answered(tg, running, group.id)
        (answer,) = tg.state.sent_by_bot(group.id)
        question = tg.state.in_chat(group.id)[1]
    assert answer.reply_to is not None and answer.reply_to.message_id == question.message_id
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["what is RAG?"]
    assert tg.calls_to("sendMessageDraft") == []
    assert tg.rate_limited == []


async def test_a_feedback_press_is_answered(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "hello")
        await answered(tg, running, chat.id)
        answer = tg.state.sent_by_bot(chat.id)[0]
        tg.inbound.press(answer, "fb:like")
        (press,) = await tg.wait_for("answerCallbackQuery")
    assert press.ok and press.args["text"] == "Thanks for the feedback!"
    (feedback,) = [r for r in dify.requests if r.path.endswith("/feedbacks")]
    assert feedback.json["rating"] == "like"


async def test_webhook_mode_refuses_a_forged_secret_and_answers_a_duplicate_once(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg, _webhook_bot(dify, tg, tmp_path) as running:
        url = f"{running.url}/telegram"
        chat = tg.inbound.private_chat()
        update = tg.inbound.text(chat, "hi")
        assert update is not None
        forged = await tg.post_update(url, update, secret="wrong")
        missing = await tg.post_update(url, update, secret="")
        first = await tg.post_update(url, update)
        again = await tg.post_update(url, update)
        await answered(tg, running, chat.id)
    assert (forged.status, missing.status) == (401, 401)
    assert (first.status, again.status) == (200, 200)
    assert len(dify.requests_to("/chat-messages")) == 1
    (hook,) = tg.calls_to("setWebhook")
    assert hook.args["secret_token"] == SECRET
    assert hook.args["allowed_updates"] == [
        "message", "callback_query", "stopped_message_generation",
    ]  # fmt: skip


def _webhook_bot(dify: FakeDify, tg: FakeTelegram, tmp_path: Path) -> Any:
    return difybot(
        dify, tmp_path / "db", **settings(
            tg, telegram_webhook_url="https://bot.example.com/telegram",
            telegram_webhook_secret=SECRET,
        ),
    )  # fmt: skip


async def test_every_markdown_construct_renders_to_html_telegram_accepts(
    dify: FakeDify, tmp_path: Path
) -> None:
    corpus = (Path(__file__).parent / "payloads/telegram/markdown_corpus.md").read_text()
    dify.enqueue("/chat-messages", Answer(chunks=[corpus], delay=0.0))
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "show me everything")
        await answered(tg, running, chat.id)
        sent = [c for c in tg.calls if c.args.get("parse_mode") == "HTML"]
    assert sent and all(call.ok for call in sent), [c.description for c in sent if not c.ok]
    for call in sent:
        parse_html(call.args["text"])  # raises on anything Telegram would refuse


async def test_a_long_answer_continues_in_more_messages(dify: FakeDify, tmp_path: Path) -> None:
    paragraph = "Dify " * 180  # 900 characters
    code = "```python\n" + "print('x')\n" * 300 + "```"  # 3,300 characters: one piece
    text = "\n\n".join([paragraph] * 6 + [code, "The end."])
    dify.enqueue(
        "/chat-messages",
        Answer(chunks=[text[i : i + 500] for i in range(0, len(text), 500)], delay=0.05),
    )
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "write a lot")
        await answered(tg, running, chat.id)
        shown = tg.state.sent_by_bot(chat.id)
    assert len(shown) >= 3 and all(len(m.text or "") <= 4096 for m in shown)
    assert [bool(m.reply_markup) for m in shown] == [False] * (len(shown) - 1) + [True]
    (block,) = [m for m in shown if "print('x')" in (m.text or "")]
    assert [e["type"] for e in block.entities] == ["pre"]  # the code block was never cut
    assert tg.rate_limited == []


async def test_the_drafts_stop_button_stops_the_answer(dify: FakeDify, tmp_path: Path) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["Once ", "upon ", "a ", "time"] * 20, delay=0.3))
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "tell me a long story")
        await tg.until(lambda: any(d.chat_id == chat.id for d in tg.state.drafts.values()), 10)
        (_, _, draft_id), draft = next(iter(tg.state.drafts.items()))
        assert draft.can_stop
        tg.inbound.stop_generation(chat, draft_id)
        await tg.until(lambda: bool(tg.state.sent_by_bot(chat.id)), 10)
        await running.core.inbox.idle()
        (answer,) = tg.state.sent_by_bot(chat.id)
    assert [r for r in dify.requests if r.path.endswith("/stop")]
    assert answer.body.startswith("Once") and answer.body.endswith("(Stopped.)")
    assert len(answer.body) < len("Once upon a time") * 20  # it did not run to the end


async def test_bot_api_calls_are_counted_by_method_never_by_url(
    dify: FakeDify, tmp_path: Path
) -> None:
    """``difybot_platform_api_calls_total`` names the Bot API method: the URL holds the token."""
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "count me")
        await answered(tg, running, chat.id)
        samples = await scrape(running.url)
        page = await fetch_text(f"{running.url}/metrics")
    sent = {"platform": "telegram", "method": "sendMessage"}
    assert value(samples, "difybot_platform_api_calls_total", **sent) >= 1
    assert value(samples, "difybot_platform_rate_limited_total", **sent) == 0
    assert tg.token not in page and tg.token.partition(":")[2] not in page


async def fetch_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()

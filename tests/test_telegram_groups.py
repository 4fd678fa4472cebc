"""Telegram groups and buttons end to end: reply chains and forum topics as conversations,
/ask, starter questions pressed, a flood-limited chat, and one update on two replicas."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.dify_routes import SUGGESTIONS
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wechat_app import difybot
from tests.test_telegram_e2e import SECRET, answered, settings, telegram_bot


def conversations(dify: FakeDify) -> list[str]:
    """The conversation id each question went out with ("" = a new one)."""
    return [r.json.get("conversation_id", "") for r in dify.requests_to("/chat-messages")]


async def test_a_reply_chain_is_one_conversation_and_a_new_mention_another(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        group = tg.inbound.group()
        alice, bob = tg.inbound.user(first_name="Alice"), tg.inbound.user(first_name="Bob")
        tg.inbound.text(group, "@dify_fake_bot first question", user=alice)
        await answered(tg, running, group.id)
        first_answer = tg.state.sent_by_bot(group.id)[-1]
        tg.inbound.text(group, "and a follow-up", reply_to=first_answer, user=bob)
        await tg.until(lambda: len(tg.state.sent_by_bot(group.id)) == 2, 10)
        await running.core.inbox.idle()
        tg.inbound.text(group, "@dify_fake_bot something else", user=alice)
        await tg.until(lambda: len(tg.state.sent_by_bot(group.id)) == 3, 10)
        await running.core.inbox.idle()
        second_answer = tg.state.sent_by_bot(group.id)[1]
    first, follow_up, other = conversations(dify)
    assert first == "" and follow_up != "" and other == ""  # the chain continued, then anew
    assert second_answer.reply_to is not None and second_answer.reply_to.text == "and a follow-up"
    assert tg.rate_limited == []


async def test_a_forum_topic_is_answered_in_its_topic(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        forum = tg.inbound.group("Dify support", forum=True)
        topic = tg.inbound.topic(forum, "Uploads")
        tg.inbound.text(forum, "/ask why does it fail?", thread_id=topic)
        await answered(tg, running, forum.id)
        tg.inbound.text(forum, "@dify_fake_bot still failing", thread_id=topic)
        await tg.until(lambda: len(tg.state.sent_by_bot(forum.id)) == 2, 10)
        await running.core.inbox.idle()
        answers = tg.state.sent_by_bot(forum.id)
    assert [a.thread_id for a in answers] == [topic, topic]
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == [
        "why does it fail?", "still failing",
    ]  # fmt: skip
    assert conversations(dify)[1] != ""  # one conversation per topic
    actions = [action for action in tg.state.chat_actions if action[0] == forum.id]
    assert actions and all(thread == topic for _, _, thread in actions)


async def test_a_starter_question_pressed_is_asked(dify: FakeDify, tmp_path: Path) -> None:
    dify.parameters["suggested_questions"] = ["What is RAG?"]
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "/start")
        await tg.until(lambda: bool(tg.state.sent_by_bot(chat.id)))
        welcome = tg.state.sent_by_bot(chat.id)[0]
        tg.inbound.press(welcome, "ask:0")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) == 3, 10)
        await running.core.inbox.idle()
        asked, answer = tg.state.sent_by_bot(chat.id)[1:]
    (pressed,) = tg.calls_to("answerCallbackQuery")
    assert pressed.ok
    assert asked.text == "❓ What is RAG?" and answer.text == "echo: What is RAG?"
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["What is RAG?"]


async def test_a_429_is_waited_out_and_the_answer_delivered(dify: FakeDify, tmp_path: Path) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["slow ", "but ", "sure"], delay=0.1))
    async with (
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path, telegram_drafts=False) as running,
    ):
        tg.fail_next("sendMessage", 429, retry_after=1)
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "hi")
        await answered(tg, running, chat.id)
        (answer,) = tg.state.sent_by_bot(chat.id)
    refused, *accepted = tg.calls_to("sendMessage")
    assert refused.status == 429 and accepted[0].ok
    assert accepted[0].at - refused.at >= 1.0  # retry_after obeyed
    assert answer.text == "slow but sure"


async def test_one_update_on_two_replicas_is_answered_once(dify: FakeDify, tmp_path: Path) -> None:
    hook = {"telegram_webhook_url": "https://bot.example.com/telegram",
            "telegram_webhook_secret": SECRET}  # fmt: skip
    async with (
        FakeTelegram() as tg,
        difybot(dify, tmp_path / "db", **settings(tg, **hook)) as a,
        difybot(dify, tmp_path / "db", **settings(tg, **hook)) as b,
    ):
        chat = tg.inbound.private_chat()
        update = tg.inbound.text(chat, "once please")
        assert update is not None
        first = await tg.post_update(f"{a.url}/telegram", update)
        again = await tg.post_update(f"{b.url}/telegram", update)
        await tg.until(lambda: any(m.reply_markup for m in tg.state.sent_by_bot(chat.id)), 10)
        await a.core.inbox.idle()
        await b.core.inbox.idle()
    assert (first.status, again.status) == (200, 200)
    assert len(dify.requests_to("/chat-messages")) == 1
    assert len(tg.state.sent_by_bot(chat.id)) == 1


async def test_suggested_questions_join_the_answers_keyboard(
    dify: FakeDify, tmp_path: Path
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "tell me")
        await answered(tg, running, chat.id)
        (answer,) = tg.state.sent_by_bot(chat.id)
        labels = [b["text"] for b in answer.buttons()]
        tg.inbound.press(answer, "ask:1")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) == 3, 10)
        await running.core.inbox.idle()
    assert labels == [*SUGGESTIONS, "👍", "👎"]
    edits = tg.calls_to("editMessageReplyMarkup")
    assert len(edits) == 2 and all(edit.ok for edit in edits)  # one per answer
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == [
        "tell me",
        SUGGESTIONS[1],
    ]


async def test_a_group_set_to_one_conversation_shares_it(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        shared, threaded = tg.inbound.group("Shared"), tg.inbound.group("Threads")
        per_chat = {"telegram_group_scopes": f"{shared.id}:chat"}
        async with telegram_bot(dify, tg, tmp_path, **per_chat) as running:
            for chat in (shared, threaded):
                for name in ("Alice", "Bob"):
                    before = len(tg.state.sent_by_bot(chat.id))
                    tg.inbound.text(
                        chat, "@dify_fake_bot hi", user=tg.inbound.user(first_name=name)
                    )
                    await tg.until(lambda c=chat, n=before: len(tg.state.sent_by_bot(c.id)) > n, 10)
                    await running.core.inbox.idle()
    shared_first, shared_second, threaded_first, threaded_second = conversations(dify)
    assert shared_first == "" and shared_second != ""  # Bob continues the group's conversation
    assert threaded_first == threaded_second == ""  # two mentions, two reply chains

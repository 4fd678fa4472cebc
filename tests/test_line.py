"""End to end: LINE webhooks into the real difybot wiring, answers out to a fake Messaging API.

Inbound bodies are built and signed the way the LINE Platform does (tests/fakes/line_webhook.py);
every assertion is on the traffic the fakes recorded.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.line.check import check_line
from adapters.line.settings import LineSettings
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.dify_routes import SUGGESTIONS
from tests.fakes.line import ACCESS_TOKEN, FakeLine
from tests.fakes.line_webhook import CHANNEL_SECRET
from tests.fakes.wechat_app import Running, difybot

REPLY = "/v2/bot/message/reply"
PUSH = "/v2/bot/message/push"
LOADING = "/v2/bot/chat/loading/start"


@pytest.fixture
async def line() -> AsyncIterator[FakeLine]:
    async with FakeLine() as fake:
        yield fake


def line_settings(line: FakeLine, **extra: Any) -> dict[str, Any]:
    return {
        "line_channel_secret": CHANNEL_SECRET, "line_channel_access_token": ACCESS_TOKEN,
        "line_api_base": line.api_url, "line_data_api_base": line.data_url,
        "line_suggestions_wait": 0, "line_locale": "en", **extra,
    }  # fmt: skip


async def deliver(running: Running, line: FakeLine, *events: dict[str, Any], **kw: Any) -> int:
    """POST the events as LINE does, then wait until the answers they started have ended."""
    status, _ = await line.events.deliver(f"{running.url}/line", *events, **kw)
    await asyncio.wait_for(running.core.inbox.idle(), 10)
    return status


async def test_a_question_shows_the_loading_animation_and_is_answered_by_reply(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    user = line.events.user()
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        assert await deliver(running, line, line.events.text("hello", user=user)) == 200
        (reply,) = await line.wait_for(REPLY)
    (loading,) = line.calls_to(LOADING)
    assert loading.json == {"chatId": user, "loadingSeconds": 20}
    assert loading.at <= reply.at
    assert line.texts(user) == ["echo: hello"]
    assert reply.status == 200 and line.calls_to(PUSH) == []
    assert line.quick_reply(user) == ["👍 Helpful", "👎 Not helpful"]
    (asked,) = dify.requests_to("/chat-messages")
    assert asked.json["user"] == f"line:{line.bot_user_id}:{user}"


async def test_markdown_arrives_as_readable_plain_text(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    markdown = (
        "## Plan\n\n**Bold** and *soft* words, `code` too.\n\n- first\n- second\n\n"
        "1. one\n2. two\n\nSee [the docs](https://example.com/docs).\n\n```\nx = 1\n```"
    )
    dify.enqueue("/chat-messages", Answer(chunks=[markdown], delay=0))
    user = line.events.user()
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, line.events.text("plan?", user=user))
        await line.wait_for(REPLY)
    (text,) = line.texts(user)
    for marker in ("**", "##", "`", "](", "- first"):
        assert marker not in text
    assert "Bold and soft words, code too." in text
    assert "• first\n• second" in text and "1. one\n2. two" in text
    assert "the docs (https://example.com/docs)" in text and "x = 1" in text


async def test_a_slow_answer_is_pushed_once_when_the_reply_token_is_refused(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeLine(reply_token_ttl=0.05) as line:
        dify.enqueue("/chat-messages", Answer(chunks=["slow ", "answer"], delay=0.2))
        user = line.events.user()
        async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
            await deliver(running, line, line.events.text("take your time", user=user))
            (push,) = await line.wait_for(PUSH)
        (reply,) = line.calls_to(REPLY)
    assert reply.status == 400  # "Invalid reply token": expired while Dify wrote
    assert push.status == 200 and push.json["to"] == user
    assert uuid.UUID(str(push.retry_key))
    assert line.texts(user) == ["slow answer"]
    assert [s.via for s in line.chats[user]] == ["push"]


async def test_past_the_reply_window_the_answer_is_pushed_without_trying_the_token(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    user = line.events.user()
    settings = line_settings(line, line_reply_window=0.001)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(running, line, line.events.text("late", user=user))
        await line.wait_for(PUSH)
    assert line.calls_to(REPLY) == []
    assert line.texts(user) == ["echo: late"]


async def test_a_push_lost_after_line_accepted_it_is_not_sent_twice(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    line.fail_next(PUSH, 500, after_accept=True)
    user = line.events.user()
    settings = line_settings(line, line_reply_window=0.001)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(running, line, line.events.text("once", user=user))
        first, again = await line.wait_for(PUSH, 2)
    assert (first.status, again.status) == (500, 409)
    assert first.retry_key == again.retry_key
    assert line.texts(user) == ["echo: once"]


async def test_a_long_answer_goes_five_messages_per_call_within_the_push_limit(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    paragraphs = [f"{n}" * 4700 for n in range(8)]
    dify.enqueue("/chat-messages", Answer(chunks=["\n\n".join(paragraphs)], delay=0))
    user = line.events.user()
    settings = line_settings(line, line_push_limit=2)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(running, line, line.events.text("long", user=user))
        (push,) = await line.wait_for(PUSH)
    (reply,) = line.calls_to(REPLY)
    assert len(reply.json["messages"]) == 5 and len(push.json["messages"]) == 2
    texts = line.texts(user)
    note = "(The answer was too long to send in full on LINE.)"
    assert texts == [*paragraphs[:6], f"{paragraphs[6]}\n\n{note}"]
    assert line.quick_reply(user) == ["👍 Helpful", "👎 Not helpful"]  # on the last one


@pytest.mark.parametrize("signature", ["", "AAAA", "forged"])
async def test_a_bad_or_missing_signature_is_refused_and_nothing_is_processed(
    dify: FakeDify, line: FakeLine, tmp_path: Path, signature: str
) -> None:
    user = line.events.user()
    event = line.events.text("hello", user=user)
    if signature == "forged":
        signature = line.events.headers(line.events.body(event))["X-Line-Signature"][::-1]
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        assert await deliver(running, line, event, signature=signature) == 401
    assert dify.requests_to("/chat-messages") == [] and line.calls == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"destination": "U1", "events": [{}]}'])
async def test_a_signed_malformed_body_is_refused(
    dify: FakeDify, line: FakeLine, tmp_path: Path, body: bytes
) -> None:
    async with (
        difybot(dify, tmp_path / "db", **line_settings(line)) as running,
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/line", data=body, headers=line.events.headers(body)) as r,
    ):
        assert r.status == 400
    assert dify.requests_to("/chat-messages") == []


async def test_the_console_verify_body_is_acknowledged(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        assert await deliver(running, line) == 200
    assert dify.requests == [] or dify.requests_to("/chat-messages") == []


async def test_a_redelivered_event_is_answered_once(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    user = line.events.user()
    event = line.events.text("once only", user=user)
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, event)
        await line.wait_for(REPLY)
        assert await deliver(running, line, line.events.redelivered(event)) == 200
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as other:
        assert await deliver(other, line, line.events.redelivered(event)) == 200
    assert len(dify.requests_to("/chat-messages")) == 1
    assert line.texts(user) == ["echo: once only"]
    assert line.calls_to(PUSH) == []


async def test_in_a_group_only_a_mention_of_the_bot_is_answered(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    alice, bob, group = line.events.user("Alice"), line.events.user("Bob"), line.events.group()
    text = "@Dify Bot 今日の会議を要約して"
    someone = "@Bob what do you think?"
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(
            running,
            line,
            line.events.text("no mention here", user=alice, chat=group),
            line.events.text(
                someone,
                user=alice,
                chat=group,
                mentions=[line.events.mention(someone, "@Bob", user=bob)],
            ),
            line.events.text(text, user=bob, chat=group, mentions=[line.events.mention(text)]),
        )
        (reply,) = await line.wait_for(REPLY)
        second = "@Dify Bot and tomorrow?"
        await deliver(
            running,
            line,
            line.events.text(second, user=alice, chat=group,
                             mentions=[line.events.mention(second)]),
        )  # fmt: skip
        await line.wait_for(REPLY, 2)
    first, follow_up = dify.requests_to("/chat-messages")
    assert first.json["query"] == "今日の会議を要約して"
    assert follow_up.json["query"] == "and tomorrow?"
    assert first.json["user"] == follow_up.json["user"] == f"line:{line.bot_user_id}:{group}"
    assert follow_up.json["conversation_id"]  # one conversation for the group
    assert line.texts(group) == ["echo: 今日の会議を要約して", "echo: and tomorrow?"]
    assert line.calls_to(LOADING) == []  # never for groups
    assert reply.status == 200


async def test_per_user_group_conversations(dify: FakeDify, line: FakeLine, tmp_path: Path) -> None:
    alice, room = line.events.user("Alice"), line.events.room()
    text = "👋 @Dify Bot hello"
    settings = line_settings(line, line_group_conversation="user")
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(
            running, line,
            line.events.text(text, user=alice, chat=room, mentions=[line.events.mention(text)]),
        )  # fmt: skip
        await line.wait_for(REPLY)
    (asked,) = dify.requests_to("/chat-messages")
    assert asked.json["query"] == "👋 hello"
    assert asked.json["user"] == f"line:{line.bot_user_id}:{alice}"
    assert line.texts(room) == ["echo: 👋 hello"]


async def test_suggested_questions_and_feedback_are_quick_replies(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    dify.parameters = {**dify.parameters, "suggested_questions_after_answer": {"enabled": True}}
    user = line.events.user()
    settings = line_settings(line, line_suggestions_wait=5)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(running, line, line.events.text("hi", user=user))
        (reply,) = await line.wait_for(REPLY)
        items = reply.json["messages"][-1]["quickReply"]["items"]
        labels = [item["action"]["label"] for item in items]
        assert labels == [*(q[:19] + "…" if len(q) > 20 else q for q in SUGGESTIONS),
                          "👍 Helpful", "👎 Not helpful"]  # fmt: skip
        ask, like = items[0]["action"], items[-2]["action"]
        assert ask["displayText"] == SUGGESTIONS[0]
        await deliver(running, line, line.events.postback(ask["data"], user=user))
        await line.wait_for(REPLY, 2)
        tap = line.events.postback(like["data"], user=user)
        await deliver(running, line, tap)
        await deliver(running, line, line.events.redelivered(tap))
        rated_path = "/messages/{}/feedbacks".format(like["data"].split(":")[3].split("|")[0])
        await dify.wait_for(rated_path)
        await line.until(lambda: len([c for c in line.calls_to(REPLY) if c.status]) >= 3)
    first, second = dify.requests_to("/chat-messages")
    assert second.json["query"] == SUGGESTIONS[0]
    assert second.json["conversation_id"]  # the same conversation goes on
    (rated,) = dify.requests_to(rated_path)
    assert rated.json["rating"] == "like" and rated.json["user"] == first.json["user"]
    assert line.texts(user)[-1] == "Thanks for the feedback!"


async def test_an_image_and_a_file_reach_dify_and_audio_is_transcribed(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 64
    pdf = b"%PDF-1.4\n" + b"\0" * 64
    user = line.events.user()
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, line.events.image(user=user, data=jpeg))
        await deliver(running, line, line.events.file("議事録.pdf", user=user, data=pdf))
        await deliver(running, line, line.events.audio(user=user, data=b"\0\0\0\x20ftypM4A "))
    contents = [c for c in line.calls if c.origin == "data"]
    assert len(contents) == 3
    assert all(c.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for c in contents)
    image, file = dify.uploads.values()
    assert image.data == jpeg and image.mime_type == "image/jpeg"
    assert file.data == pdf and file.filename == "議事録.pdf"
    image_chat, file_chat, voice_chat = dify.requests_to("/chat-messages")
    assert image_chat.json["files"][0]["type"] == "image"
    assert file_chat.json["files"][0]["type"] == "document"
    (speech,) = dify.requests_to("/audio-to-text")
    assert speech.files["file"][1] == "audio/m4a"
    assert voice_chat.json["query"].startswith("transcribed: voice-")
    assert len(line.texts(user)) == 3


async def test_answer_images_are_sent_as_image_messages(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    url = "https://files.example.com/files/tools/abc.png?timestamp=1&sign=x"
    dify.enqueue(
        "/chat-messages",
        Answer(chunks=[f"Here it is:\n\n![chart]({url})"], delay=0,
               files=[{"type": "image", "url": url, "filename": "abc.png"}]),
    )  # fmt: skip
    user = line.events.user()
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, line.events.text("chart", user=user))
        (reply,) = await line.wait_for(REPLY)
    text, image = reply.json["messages"]
    assert text["text"] == "Here it is:"
    assert image["type"] == "image" and image["originalContentUrl"] == url


async def test_check_verifies_the_channel_access_token(line: FakeLine) -> None:
    good = LineSettings(
        line_channel_secret=CHANNEL_SECRET, line_channel_access_token=ACCESS_TOKEN,
        line_api_base=line.api_url,
    )  # fmt: skip
    (ok,) = await check_line(good)
    wrong = good.model_copy(update={"line_channel_access_token": SecretStr("nope")})
    (bad,) = await check_line(wrong)
    assert ok.ok and "@012difyb" in ok.detail
    assert not bad.ok and "401" in bad.detail and "nope" not in bad.detail


async def test_a_new_friend_gets_the_opening_statement_and_starter_questions(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    dify.parameters = {
        **dify.parameters,
        "opening_statement": "こんにちは！何でも聞いてください。",
        "suggested_questions": ["東京の天気は？", "おすすめの本は？"],
    }
    user = line.events.user()
    follow = line.events.follow(user=user)
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, follow)
        await deliver(running, line, line.events.redelivered(follow))
        await line.until(lambda: any(c.status for c in line.calls_to(REPLY)))
    assert line.texts(user) == ["こんにちは！何でも聞いてください。"]
    assert line.quick_reply(user) == ["東京の天気は？", "おすすめの本は？"]
    assert len(line.calls_to(REPLY)) == 1 and dify.requests_to("/chat-messages") == []


async def test_a_video_line_is_still_preparing_is_asked_for_again(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    dify.parameters = copy.deepcopy(dify.parameters)
    dify.parameters["file_upload"]["allowed_file_types"].append("video")
    user = line.events.user()
    event = line.events.video(user=user)
    video = b"\0\0\0\x18ftypmp42" + b"\0" * 64
    line.add_content(event["message"]["id"], video, "video/mp4", polls_before_ready=1)
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, event)
    assert [c.status for c in line.calls if c.origin == "data"] == [202, 200]
    (upload,) = dify.uploads.values()
    assert upload.data == video and upload.mime_type == "video/mp4"


async def test_feedback_in_a_group_rates_as_the_member_who_was_answered(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    alice, bob, group = line.events.user("Alice"), line.events.user("Bob"), line.events.group()
    text = "@Dify Bot hi"
    settings = line_settings(line, line_group_conversation="user")
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await deliver(
            running, line,
            line.events.text(text, user=alice, chat=group, mentions=[line.events.mention(text)]),
        )  # fmt: skip
        (reply,) = line.calls_to(REPLY)
        like = reply.json["messages"][-1]["quickReply"]["items"][0]["action"]
        await deliver(running, line, line.events.postback(like["data"], user=bob, chat=group))
        (asked,) = dify.requests_to("/chat-messages")
        message_id = like["data"].split(":")[3].split("|")[0]
        (rated,) = await dify.wait_for(f"/messages/{message_id}/feedbacks")
    assert rated.json == {"rating": "like", "user": asked.json["user"]}
    assert asked.json["user"] == f"line:{line.bot_user_id}:{alice}"


async def test_a_late_first_delivery_is_pushed_without_trying_its_old_token(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    """LINE redelivers an event it got no 200 for, with its first reply token: the token ages
    from the event's timestamp."""
    user = line.events.user()
    event = line.events.redelivered(line.events.text("are you there?", user=user))
    event["timestamp"] -= 120_000  # sent two minutes ago, first delivered only now
    async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await deliver(running, line, event)
    assert line.calls_to(REPLY) == []
    assert line.texts(user) == ["echo: are you there?"]

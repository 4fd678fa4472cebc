"""End to end: the Official Account against fake WeChat (real retry timing, scaled), fake Dify."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, HttpError
from tests.fakes.wechat import FakeWeChatAPI, Media
from tests.fakes.wechat_app import (
    AES_KEY,
    TIMEOUT,
    TOKEN,
    Running,
    difybot,
    wechat_settings,
)
from tests.fakes.wechat_push import OfficialAccountServer

USER = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"
PENDING = "回答正在生成中，发送任意消息即可获取。"


def wechat(running: Running, api: FakeWeChatAPI, **kwargs: object) -> OfficialAccountServer:
    return OfficialAccountServer(
        f"{running.url}/wechat",
        token=TOKEN,
        app_id=api.app_id,
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


def slow(seconds: float, text: str = "slow answer") -> Answer:
    """An answer whose last chunk arrives ``seconds`` after the question."""
    return Answer(chunks=[text[:4], text[4:], ""], delay=seconds / 3)


async def test_a_fast_answer_is_the_passive_reply(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        outcome = await wechat(running, api).push(wechat(running, api).message(USER, 1, "**hi**"))
    assert outcome.content == "echo: hi"  # Markdown gone: WeChat shows plain text
    assert len(outcome.deliveries) == 1 and outcome.reply is not None
    assert (
        outcome.reply["ToUserName"] == USER and outcome.reply["FromUserName"] == "gh_97417a04a28d"
    )
    (ask,) = dify.requests_to("/chat-messages")
    assert ask.json["user"] == f"wechat:{api.app_id}:{USER}"
    assert api.calls == []  # a passive reply needs no token and no API call


@pytest.mark.parametrize(("seconds", "deliveries"), [(TIMEOUT * 1.35, 2), (TIMEOUT * 2.3, 3)])
async def test_a_slow_answer_rides_the_redeliveries_with_one_dify_call(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path, seconds: float, deliveries: int
) -> None:
    dify.enqueue("/chat-messages", slow(seconds))
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        outcome = await wechat(running, api).push(wechat(running, api).message(USER, 2, "q"))
    assert outcome.content == "slow answer"
    assert len(outcome.deliveries) == deliveries
    assert [d.status for d in outcome.deliveries[:-1]] == [None] * (deliveries - 1)  # lapsed
    assert outcome.deliveries[-1].seconds < TIMEOUT  # answered before WeChat hung up
    assert len(dify.requests_to("/chat-messages")) == 1  # never three


async def test_unverified_very_slow_answer_is_fetched_by_the_next_message(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", slow(TIMEOUT * 3, "late but here"))
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        outcome = await server.push(server.message(USER, 3, "q"))
        assert not outcome.failed and len(outcome.deliveries) == 3
        assert outcome.content == PENDING  # on the last delivery, never "暂时无法提供服务"
        await dify.wait_streams(0, timeout=5)
        fetched = await server.push(server.message(USER, 4, "继续"))
    assert fetched.content == "late but here"
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == [
        "q"
    ]  # 继续 only fetched


async def test_fetch_before_the_answer_is_done_waits_again(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", slow(TIMEOUT * 3.6, "eventually"))
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        assert (await server.push(server.message(USER, 5, "q"))).content == PENDING
        fetched = await server.push(server.message(USER, 6, "好了吗"))  # before it is done
    assert fetched.content == "eventually"
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_verified_account_pushes_a_very_slow_answer_with_typing(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", slow(TIMEOUT * 1.5, "pushed **answer**"))
    settings = wechat_settings(api, wechat_account_verified=True)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        outcome = await wechat(running, api).push(wechat(running, api).message(USER, 7, "q"))
        assert outcome.reply is None and len(outcome.deliveries) == 1  # "success": no retries
        assert outcome.deliveries[0].seconds < TIMEOUT  # before WeChat hangs up
        (send,) = await api.wait_for("/cgi-bin/message/custom/send")
    assert send.json == {
        "touser": USER,
        "msgtype": "text",
        "text": {"content": "pushed answer"},
    }
    (typing,) = api.calls_to("/cgi-bin/message/custom/typing")
    assert typing.json["command"] == "Typing" and typing.json["touser"] == USER
    assert len(api.calls_to("/cgi-bin/stable_token")) == 1
    assert len(dify.requests_to("/chat-messages")) == 1


@pytest.mark.allow_warnings(r"^customer-service send failed")
async def test_verified_account_keeps_an_answer_it_could_not_push(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    """45015 (outside the 48-hour window): the answer waits for the user's next message."""
    dify.enqueue("/chat-messages", slow(TIMEOUT * 1.2, "kept for you"))
    api.fail_next("/cgi-bin/message/custom/send", 45015)
    settings = wechat_settings(api, wechat_account_verified=True)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        server = wechat(running, api)
        await server.push(server.message(USER, 8, "q"))
        await api.wait_for("/cgi-bin/message/custom/send")
        fetched = await server.push(server.message(USER, 9, "hello?"))
    assert fetched.content == "kept for you"
    assert api.sent_texts() == []


async def test_long_answers_split_into_2048_byte_parts(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    sentence = "这是一个很长的回答里的一句话。"
    dify.enqueue("/chat-messages", Answer(chunks=[sentence * 120]))  # 5 400 bytes
    more = "\n\n（未完待续，发送任意消息查看后续内容）"
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        contents = [(await server.push(server.message(USER, 10, "long"))).content or ""]
        while contents[-1].endswith(more):
            push = server.message(USER, 10 + len(contents), "more")
            contents.append((await server.push(push)).content or "")
    assert len(contents) == 3
    assert all(len(c.encode()) <= 2048 for c in contents)
    assert all(c.removesuffix(more).endswith("。") for c in contents)  # cut between sentences
    assert "".join(c.removesuffix(more) for c in contents) == sentence * 120
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_verified_long_answer_passive_first_then_pushed(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    sentence = "Sentence number one is here. "
    dify.enqueue("/chat-messages", Answer(chunks=[sentence * 150]))
    settings = wechat_settings(api, wechat_account_verified=True)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        outcome = await wechat(running, api).push(wechat(running, api).message(USER, 12, "long"))
        await api.wait_for("/cgi-bin/message/custom/send", 2)
    parts = [outcome.content, *api.sent_texts()]
    assert " ".join(p.strip() for p in parts if p) == (sentence * 150).strip()


@pytest.mark.parametrize("mode", ["safe", "compat"])
async def test_aes_modes_decrypt_pushes_and_encrypt_replies(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path, mode: str
) -> None:
    settings = wechat_settings(api, wechat_encoding_aes_key=AES_KEY)
    async with difybot(dify, tmp_path / "db", **settings) as running:
        server = wechat(running, api, aes_key=AES_KEY, mode=mode)
        outcome = await server.push(server.message(USER, 13, "secret ]]> question"))
    assert outcome.deliveries[0].body.startswith(b"<xml><Encrypt>")
    assert outcome.content == "echo: secret ]]> question"


async def test_subscribe_gets_the_opening_statement(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.parameters["opening_statement"] = "欢迎！我是 **Dify** 助手。"
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        fields = {**server.message(USER, 0, ""), "MsgType": "event", "Event": "subscribe"}
        del fields["MsgId"], fields["Content"]
        outcome = await server.push(fields)
    assert outcome.content == "欢迎！我是 Dify 助手。"
    assert dify.requests_to("/chat-messages") == []


async def test_voice_with_and_without_recognition(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    api.media["voice-1"] = Media(b"#!AMR\n....", "audio/amr")
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        voice = {
            **server.message(USER, 14, ""),
            "MsgType": "voice",
            "MediaId": "voice-1",
            "Format": "amr",
        }
        del voice["Content"]
        heard = await server.push({**voice, "Recognition": "今天天气怎么样"})
        transcribed = await server.push({**voice, "MsgId": 15})
    assert heard.content == "echo: 今天天气怎么样"
    assert transcribed.content == "echo: transcribed: voice-1.amr"
    (download,) = api.calls_to("/cgi-bin/media/get")
    assert download.query["media_id"] == "voice-1"


async def test_two_replicas_share_one_answer(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    """Delivery 1 lands on replica A, the redelivery on B: still one Dify call; B replies."""
    dify.enqueue("/chat-messages", slow(TIMEOUT * 1.4, "one answer"))
    settings = wechat_settings(api)
    async with (
        difybot(dify, tmp_path / "db", **settings) as a,
        difybot(dify, tmp_path / "db", **settings) as b,
    ):
        server = wechat(a, api)
        server.urls = [f"{a.url}/wechat", f"{b.url}/wechat"]
        outcome = await server.push(server.message(USER, 16, "q"))
    assert outcome.content == "one answer" and len(outcome.deliveries) == 2
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_two_quick_questions_are_two_answers_in_order(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    """A second message while the first is still running is a question, not a fetch."""
    dify.enqueue("/chat-messages", slow(TIMEOUT * 0.3, "first answer"))
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api)
        first = asyncio.create_task(server.push(server.message(USER, 20, "one")))
        await dify.wait_for("/chat-messages")
        second = await server.push(server.message(USER, 21, "two"))
    assert (await first).content == "first answer"
    assert second.content == "echo: two"
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["one", "two"]


@pytest.mark.allow_warnings(r"type=DifyHTTPError")
async def test_a_dify_failure_reaches_the_user_as_a_notice(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", HttpError(400, "invalid_param", "bad request"))
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        outcome = await wechat(running, api).push(wechat(running, api).message(USER, 22, "q"))
    assert outcome.content == "抱歉，回答时出错了，请重试。"


async def test_compat_mode_without_a_key_reads_the_plain_fields(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = wechat(running, api, aes_key=AES_KEY, mode="compat")
        outcome = await server.push(server.message(USER, 23, "plain too"))
    assert outcome.content == "echo: plain too"

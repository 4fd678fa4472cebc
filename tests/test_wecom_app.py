"""End to end: the WeCom self-built app against fake WeCom and fake Dify; the member limiter."""

from __future__ import annotations

from pathlib import Path

from adapters.wecom_app.app import MemberLimiter
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.wechat import FakeWeChatAPI, Media
from tests.fakes.wechat_app import AES_KEY, TOKEN, Running, difybot, wecom_settings
from tests.fakes.wecom_push import WeComServer

SEND = "/cgi-bin/message/send"


def wecom(running: Running, api: FakeWeChatAPI) -> WeComServer:
    return WeComServer(
        f"{running.url}/wecom",
        token=TOKEN,
        aes_key=AES_KEY,
        corp_id=api.corp_id,
        agent_id="1000002",
    )


async def test_url_verification_returns_the_decrypted_echostr(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        assert await wecom(running, api).verify_url("5927782489442352469") == (
            200,
            "5927782489442352469",
        )


async def test_a_message_is_acked_at_once_and_answered_as_markdown(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue(
        "/chat-messages", Answer(chunks=["**Bold** and *it*, ", "[doc](https://d.example)"])
    )
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        server = wecom(running, api)
        fields = server.message("zhangsan", 4363689963896700987, "hello")
        assert await server.push(fields) == (200, "")
        assert await server.push(fields) == (200, "")  # WeCom's retry: joins, no second answer
        (send,) = await api.wait_for(SEND)
    assert send.json == {
        "touser": "zhangsan",
        "agentid": 1000002,
        "msgtype": "markdown",
        "markdown": {"content": "**Bold** and it, [doc](https://d.example)"},
    }
    assert len(dify.requests_to("/chat-messages")) == 1
    assert dify.requests_to("/chat-messages")[0].json["user"] == f"wecom:{api.corp_id}:zhangsan"


async def test_text_format_and_the_2048_byte_split(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["第一句话说完了。" * 200]))
    settings = wecom_settings(api, wecom_reply_format="text")
    async with difybot(dify, tmp_path / "db", **settings) as running:
        await wecom(running, api).push(wecom(running, api).message("lisi", 1, "long"))
        sends = await api.wait_for(SEND, 3)
    assert {s.json["msgtype"] for s in sends} == {"text"}
    texts = api.sent_texts(SEND)
    assert all(len(t.encode()) <= 2048 for t in texts)
    assert "".join(texts) == "第一句话说完了。" * 200


async def test_voice_is_downloaded_and_transcribed(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    api.media["voice-9"] = Media(b"#!AMR\n", "audio/amr")
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        server = wecom(running, api)
        voice = {**server.message("wangwu", 2, ""), "MsgType": "voice", "MediaId": "voice-9",
                 "Format": "amr"}  # fmt: skip
        del voice["Content"]
        await server.push(voice)
        await api.wait_for(SEND)
    assert api.sent_texts(SEND) == ["echo: transcribed: voice-9.amr"]
    assert len(api.calls_to("/cgi-bin/gettoken")) == 1


async def test_bad_signature_is_refused_and_nothing_runs(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        server = wecom(running, api)
        status, _ = await server.push(server.message("zhangsan", 3, "hi"), signature="0" * 40)
        ok, _ = await server.push(server.message("zhangsan", 4, "hi"))  # proves it was live
        await api.wait_for(SEND)
    assert status == 403 and ok == 200
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["hi"]


async def test_member_limiter_waits_for_room() -> None:
    """Never more than a member's minute and hour allow, in any rolling window; another member
    is not held up."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = MemberLimiter(per_minute=3, per_hour=5, clock=lambda: now[0], sleep=sleep)
    sent: list[float] = []
    for _ in range(12):
        await limiter.acquire("a")
        sent.append(now[0])
    assert sent[:2] == [0.0, 0.0]  # a burst, then the buckets' pace
    for at in sent:
        assert sum(at <= t < at + 60 for t in sent) <= 3
        assert sum(at <= t < at + 3600 for t in sent) <= 5
    before = now[0]
    await limiter.acquire("b")
    assert now[0] == before

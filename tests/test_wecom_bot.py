"""End to end: the WeCom AI bot's stream protocol against fake WeCom polling and fake Dify."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, Turnstile
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import BOT_AES_KEY, Running, difybot, wecom_settings
from tests.fakes.wechat_crypto import sign
from tests.fakes.wecom_push import AIBotServer


def bot(running: Running) -> AIBotServer:
    return AIBotServer(f"{running.url}/wecom/bot", token="bot-token", aes_key=BOT_AES_KEY)


async def test_url_verification(dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path) -> None:
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        assert await bot(running).verify_url("1234567890") == (200, "1234567890")


async def test_the_answer_streams_through_refresh_polls_and_finishes(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    """Every stage of the answer reaches WeCom's polls. Dify sends the next chunk only once a
    poll has shown the last one, so what is seen does not depend on how busy the machine is."""
    chunks = ["**Guangzhou** ", "is ", "sunny, ", "29 °C ", "today."]
    stages = ["".join(chunks[: n + 1]) for n in range(len(chunks))]
    pace = Turnstile()

    def on_state(state: dict[str, Any]) -> None:
        if state["content"] == stages[min(pace.allowed, len(stages)) - 1]:
            pace.allow()  # WeCom showed the newest chunk: Dify may send the next one

    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.0, turnstile=pace))
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        server = bot(running)
        states = await server.converse(server.message("m1", "weather?"), on_state=on_state)
    assert states[0]["content"] == "" and not states[0]["finish"]
    assert states[-1] == {"id": states[0]["id"], "finish": True, "content": "".join(chunks)}
    shown = [c for c, _ in itertools.groupby(s["content"] for s in states) if c]
    assert shown == stages  # one chunk at a time, never out of order, nothing skipped
    assert {s["id"] for s in states} == {states[0]["id"]}
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_a_repeated_callback_joins_the_same_stream(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["a", "b"], delay=0.2))
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        server = bot(running)
        first = await server.post(server.message("m2", "hi"))
        again = await server.post(server.message("m2", "hi"))
        states = await server.converse(server.message("m2", "hi"))
    assert first is not None and again is not None
    assert first["stream"]["id"] == again["stream"]["id"] == states[-1]["id"]
    assert states[-1]["content"] == "ab"
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_refreshes_are_served_by_another_replica(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["from ", "replica ", "A"], delay=0.1))
    settings = wecom_settings(api)
    async with (
        difybot(dify, tmp_path / "db", **settings) as a,
        difybot(dify, tmp_path / "db", **settings) as b,
    ):
        first = await bot(a).post(bot(a).message("m3", "hi"))
        assert first is not None
        stream_id = first["stream"]["id"]
        poller = bot(b)
        state = first["stream"]
        while not state["finish"]:
            await dify.wait_streams(0)  # let A finish; B still answers every poll from the store
            reply = await poller.post(poller.refresh(stream_id))
            assert reply is not None
            state = reply["stream"]
    assert state["content"] == "from replica A"


async def test_an_answer_past_the_stream_window_goes_by_response_url(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        running.adapter("wecom_bot").stream_window = 0.0  # as if 6 minutes had passed
        url = f"{api.url}/cgi-bin/aibot/response?response_code=once"
        await bot(running).post(bot(running).message("m4", "slow", response_url=url))
        (posted,) = await api.wait_for("/cgi-bin/aibot/response")
    assert posted.json == {"msgtype": "markdown", "markdown": {"content": "echo: slow"}}


async def test_enter_chat_gets_the_opening_statement(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.parameters["opening_statement"] = "Hi, ask me anything."
    event = json.loads(
        (Path(__file__).parent / "payloads/wechat/aibot_enter_chat.json").read_text()
    )
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        reply = await bot(running).post(event)
    assert reply == {"msgtype": "text", "text": {"content": "Hi, ask me anything."}}


@pytest.mark.parametrize(
    ("body", "signed", "status"),
    [(b"not json", True, 400), (b'{"encrypt": "AAAA"}', False, 403), (b"[]", True, 400)],
)
async def test_hostile_bodies_are_refused(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path, body: bytes, signed: bool, status: int
) -> None:
    stamp = str(int(time.time()))
    query = {"timestamp": stamp, "nonce": "2", "msg_signature": sign("bot-token", stamp, "2", "x")}
    async with (
        difybot(dify, tmp_path / "db", **wecom_settings(api)) as running,
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/wecom/bot", params=query if signed else {}, data=body) as r,
    ):
        assert r.status == status
    assert dify.requests_to("/chat-messages") == []

"""A replica told to stop (SIGTERM's order in ``difybot serve``: the adapters stop taking
messages, the core finishes the answers in flight within SHUTDOWN_TIMEOUT, then the adapters
close their clients) still delivers an answer that was being written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.dingtalk_inbound import robot_message
from tests.fakes.line import FakeLine
from tests.fakes.wechat_app import difybot
from tests.test_dingtalk import SESSION, post
from tests.test_dingtalk import settings as dingtalk_settings
from tests.test_line import LOADING, REPLY, line_settings

SLOW = Answer(chunks=["still ", "being ", "written"], delay=0.3)


@pytest.fixture
async def line() -> AsyncIterator[FakeLine]:
    async with FakeLine() as fake:
        yield fake


@pytest.fixture
async def dingtalk() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as fake:
        yield fake


async def test_line_answer_in_flight_is_delivered_after_stop(
    dify: FakeDify, line: FakeLine, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", SLOW)
    user = line.events.user()
    async with difybot(dify, tmp_path / "db", **line_settings(line), shutdown_timeout=10) as bot:
        status, _ = await line.events.deliver(f"{bot.url}/line", line.events.text("q", user=user))
        assert status == 200
        await line.wait_for(LOADING)
        await dify.wait_for("/chat-messages")
    assert line.texts(user) == ["still being written"]
    assert [call.status for call in line.calls_to(REPLY)] == [200]


async def test_dingtalk_answer_in_flight_is_delivered_after_stop(
    dify: FakeDify, dingtalk: FakeDingTalk, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", SLOW)
    config = {**dingtalk_settings(dingtalk), "shutdown_timeout": 10}
    async with difybot(dify, tmp_path / "db", **config) as bot:
        assert await post(bot, dingtalk, robot_message(dingtalk, "q")) == 200
        await dingtalk.wait_for(SESSION)  # the sign of life; the answer is still being written
    texts = [call.json for call in dingtalk.calls_to(SESSION)]
    assert len(texts) == 2 and "still being written" in str(texts[-1])

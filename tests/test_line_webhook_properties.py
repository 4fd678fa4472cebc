"""LINE's webhook fed random bodies signed with the channel secret: whatever is inside, the
answer is 2xx or 4xx, never 5xx, and the server stays up (as tests/test_webhook_properties.py
does for the other platforms)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.dify import FakeDify
from tests.fakes.line import FakeLine
from tests.fakes.line_webhook import BOT_USER_ID, sign
from tests.fakes.wechat_app import difybot
from tests.test_line import line_settings
from tests.test_webhook_properties import EXAMPLES, json_values, no_5xx, shaped


@pytest.fixture(scope="module")
def line_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, httpx.Client]]:
    database = tmp_path_factory.mktemp("line") / "difybot.db"
    ready, found = threading.Event(), {}

    async def run() -> None:
        stop = asyncio.Event()
        async with FakeDify() as dify, FakeLine() as line:
            settings = {**line_settings(line), "rate_limit_per_minute": 0}
            async with difybot(dify, database, **settings) as bot:
                loop = asyncio.get_running_loop()
                found.update(url=bot.url, stop=lambda: loop.call_soon_threadsafe(stop.set))
                ready.set()
                await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="difybot-line-under-test")
    thread.start()
    assert ready.wait(30), "difybot did not start"
    with httpx.Client(timeout=10) as http:
        yield found["url"], http
        assert http.get(found["url"] + "/healthz").status_code == 200  # still up after it all
    found["stop"]()
    thread.join(30)


messages = shaped(
    ["id", "text", "mention", "fileName", "fileSize", "contentProvider", "duration"],
    ["text", "image", "video", "audio", "file", "sticker", "location"],
)
mentions = st.fixed_dictionaries(
    {"mentionees": st.lists(shaped(["index", "length", "isSelf", "userId"], ["user", "all"]),
                            max_size=3) | json_values},
)  # fmt: skip
sources = shaped(["userId", "groupId", "roomId"], ["user", "group", "room"])
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "postback", "follow", "join"]) | st.text(max_size=6),
     "webhookEventId": st.text(min_size=1, max_size=26) | json_values},
    optional={"source": sources | json_values, "replyToken": json_values,
              "timestamp": json_values, "deliveryContext": json_values,
              "message": messages | st.builds(lambda m, n: {**m, "mention": n}, messages, mentions),
              "postback": shaped(["data", "params"], ["postback"]) | json_values},
)  # fmt: skip
bodies = st.fixed_dictionaries(
    {"destination": st.just(BOT_USER_ID) | json_values,
     "events": st.lists(events, max_size=3) | json_values},
)  # fmt: skip


@EXAMPLES
@given(bodies)
def test_any_signed_body_gets_2xx_or_4xx(line_url: tuple[str, httpx.Client], body: Any) -> None:
    url, http = line_url
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = {"X-Line-Signature": sign(raw), "Content-Type": "application/json"}
    no_5xx(http.post(url + "/line", content=raw, headers=headers).status_code)

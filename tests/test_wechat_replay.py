"""WeChat and WeCom callbacks: no downgrade from safe mode, no stale timestamps, no replays.

A plain ``signature`` is sha1 of token, timestamp and nonce: it covers no body, so whoever saw
one signed query string could once post any XML under it. These tests play that attacker against
the real wiring: the forged or replayed request gets a 4xx and neither Dify nor the user's
conversation ever hears of it.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import (
    AES_KEY,
    BOT_AES_KEY,
    TIMEOUT,
    TOKEN,
    difybot,
    wechat_settings,
    wecom_settings,
)
from tests.fakes.wechat_push import OfficialAccountServer
from tests.fakes.wecom_push import AIBotServer, WeComServer

VICTIM = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"


async def post(url: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, params=query, data=body) as r:
        return r.status, await r.text()


def official(url: str, api: FakeWeChatAPI, mode: str) -> OfficialAccountServer:
    return OfficialAccountServer(
        f"{url}/wechat", token=TOKEN, app_id=api.app_id, aes_key=AES_KEY, mode=mode,
        timeout=TIMEOUT,
    )  # fmt: skip


async def test_safe_mode_takes_no_plain_push_however_well_signed(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    settings = wechat_settings(api, wechat_encoding_aes_key=AES_KEY)
    async with difybot(dify, tmp_path / "db", **settings) as bot:
        plain = official(bot.url, api, "plain")
        # The attack: a correct plain signature (seen once in a log), any XML as any OpenID.
        query, body = plain.signed(plain.message(VICTIM, 7001, "forged question"))
        assert await post(f"{bot.url}/wechat", query, body) == (403, "")
        safe = official(bot.url, api, "safe")
        genuine = await safe.push(safe.message(VICTIM, 7002, "real question"))
    assert genuine.content == "echo: real question"
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["real question"]


async def test_compatible_mode_takes_plain_pushes_and_still_verifies_them(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    settings = wechat_settings(api, wechat_encoding_aes_key=AES_KEY, wechat_compatible_mode=True)
    async with difybot(dify, tmp_path / "db", **settings) as bot:
        plain = official(bot.url, api, "plain")
        taken = await plain.push(plain.message(VICTIM, 7101, "plain and genuine"))
        query, body = plain.signed(plain.message(VICTIM, 7102, "replayed"))
        assert (await post(f"{bot.url}/wechat", query, body))[0] == 200
        assert await post(f"{bot.url}/wechat", query, body) == (403, "")  # the replay
        stale, body = plain.signed(plain.message(VICTIM, 7103, "old"), timestamp=1_430_000_000)
        assert await post(f"{bot.url}/wechat", stale, body) == (403, "")
        forged = {**query, "signature": "0" * 40, "nonce": "1"}
        assert await post(f"{bot.url}/wechat", forged, body) == (403, "")
        compat = official(bot.url, api, "compat")  # WeChat's own compatible mode: both in one
        both = await compat.push(compat.message(VICTIM, 7104, "compat"))
    assert taken.content == "echo: plain and genuine" and both.content == "echo: compat"
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["plain and genuine", "replayed", "compat"]


@pytest.mark.parametrize("skew", [-301, 301, -24 * 3600 * 365 * 10])
async def test_a_timestamp_outside_five_minutes_is_refused_in_plain_mode_too(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path, skew: int
) -> None:
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as bot:
        plain = official(bot.url, api, "plain")
        fields = plain.message(VICTIM, 7201, "from 2015")
        query, body = plain.signed(fields, timestamp=int(time.time()) + skew)
        assert await post(f"{bot.url}/wechat", query, body) == (403, "")
        query, body = plain.signed(fields, timestamp=int(time.time()) - 250)  # inside: fine
        assert (await post(f"{bot.url}/wechat", query, body))[0] == 200
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_a_replay_is_refused_by_every_replica(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    """WeChat may deliver to any replica: the memory of seen requests is the shared database."""
    settings = {**wechat_settings(api, wechat_encoding_aes_key=AES_KEY), **wecom_settings(api)}
    database = tmp_path / "shared.db"
    async with (
        difybot(dify, database, **settings) as first,
        difybot(dify, database, **settings) as second,
    ):
        safe = official(first.url, api, "safe")
        query, body = safe.signed(safe.message(VICTIM, 7301, "once"))
        assert (await post(f"{first.url}/wechat", query, body))[0] == 200
        for replica in (second, first):
            assert await post(f"{replica.url}/wechat", query, body) == (403, "")

        wecom = WeComServer(f"{first.url}/wecom", token=TOKEN, aes_key=AES_KEY,
                            corp_id=api.corp_id, agent_id="1000002")  # fmt: skip
        query, body = wecom.signed(wecom.message("zhangsan", 7302, "wecom once"))
        assert await wecom.send(query, body) == (200, "")
        assert await post(f"{second.url}/wecom", query, body) == (403, "")
        await api.wait_for("/cgi-bin/message/send")

        aibot = AIBotServer(f"{first.url}/wecom/bot", token="bot-token", aes_key=BOT_AES_KEY)
        query, body = aibot.signed(aibot.message("m-7303", "bot once"))
        assert (await post(f"{first.url}/wecom/bot", query, body))[0] == 200
        assert await post(f"{second.url}/wecom/bot", query, body) == (403, "")
        await dify.wait_for("/chat-messages", 3)
    asked = sorted(r.json["query"] for r in dify.requests_to("/chat-messages"))
    assert asked == ["bot once", "once", "wecom once"]

"""The Official Account route refuses what did not come from WeChat, and hostile XML, fast."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import AES_KEY, TOKEN, Running, difybot, wechat_settings
from tests.fakes.wechat_crypto import sign
from tests.fakes.wechat_push import OfficialAccountServer, to_xml
from tests.test_wechat_payloads import BOMB, EXTERNAL


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Running, FakeDify, FakeWeChatAPI]]:
    async with FakeDify() as dify, FakeWeChatAPI() as api:
        settings = wechat_settings(api, wechat_encoding_aes_key=AES_KEY)
        async with difybot(dify, tmp_path / "db", **settings) as bot:
            yield bot, dify, api


async def post(url: str, query: dict[str, str], body: bytes) -> tuple[int, str, float]:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.post(url, params=query, data=body) as r:
        return r.status, await r.text(), time.perf_counter() - started


def signed_query(token: str = TOKEN, stamp: str = "") -> dict[str, str]:
    """Signed now (when the test runs, not when it is collected: the suite outlasts the
    5-minute window), or at ``stamp``."""
    stamp = stamp or str(int(time.time()))
    return {"signature": sign(token, stamp, "486452656"), "timestamp": stamp,
            "nonce": "486452656", "openid": "u"}  # fmt: skip


async def test_url_verification_echoes_only_for_the_right_token(
    running: tuple[Running, FakeDify, FakeWeChatAPI],
) -> None:
    bot, _, api = running
    server = OfficialAccountServer(f"{bot.url}/wechat", token=TOKEN, app_id=api.app_id)
    assert await server.verify_url("4375120948345356249") == (200, "4375120948345356249")
    assert (await server.verify_url("4375120948345356249", token="forged"))[0] == 403


MESSAGE = to_xml({"ToUserName": "gh", "FromUserName": "u", "CreateTime": 1, "MsgType": "text",
                  "Content": "hi", "MsgId": 99})  # fmt: skip


SEALED = {"encrypt_type": "aes"}


def sealed_query(encrypted: str) -> dict[str, str]:
    """Signed now for the encrypted mode; ``msg_signature`` over ``encrypted`` ("": forged)."""
    query = {**signed_query(), **SEALED}
    query["msg_signature"] = (
        sign(TOKEN, query["timestamp"], query["nonce"], encrypted) if encrypted else "0" * 40
    )
    return query


@pytest.mark.parametrize(
    ("safe", "query", "body", "status"),
    [
        (False, lambda: signed_query("forged"), MESSAGE, 403),
        (False, dict, MESSAGE, 403),
        (False, lambda: signed_query(stamp="1714037059"), MESSAGE, 403),  # signed in 2024: stale
        (False, signed_query, BOMB, 400),
        (False, signed_query, EXTERNAL, 400),
        (False, signed_query, b"<xml><Content>unclosed", 400),
        (False, signed_query, b"<xml>" + b"<a>x</a>" * 40_000 + b"</xml>", 413),
        (True, signed_query, MESSAGE, 403),  # plain while a key is set: a downgrade
        (True, lambda: sealed_query(""), to_xml({"ToUserName": "gh", "Encrypt": "AAAA"}), 403),
        (True, lambda: sealed_query("!!"), to_xml({"ToUserName": "gh", "Encrypt": "!!"}), 400),
    ],
)
async def test_refused_requests_process_nothing(
    tmp_path: Path, safe: bool, query: Callable[[], dict[str, str]], body: bytes, status: int
) -> None:
    async with FakeDify() as dify, FakeWeChatAPI() as api:
        settings = wechat_settings(api, wechat_encoding_aes_key=AES_KEY if safe else None)
        async with difybot(dify, tmp_path / "db", **settings) as bot:
            got, text, seconds = await post(f"{bot.url}/wechat", query(), body)
    assert (got, text) == (status, "")
    assert seconds < 0.5
    assert dify.requests_to("/chat-messages") == [] and api.calls == []

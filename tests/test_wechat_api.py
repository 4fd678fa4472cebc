"""The WeChat/WeCom API client against the fake API: shared tokens, refresh once, typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest

from adapters.tencent.api import AccessTokens, PlatformAPI, build_http, stable_token, wecom_token
from adapters.tencent.errors import WeChatAPIError
from storage.tokens import TokenStore
from storage.units import Database
from tests.fakes.wechat import FakeWeChatAPI, Media

SEND = "/cgi-bin/message/custom/send"
MESSAGE = {"touser": "openid", "msgtype": "text", "text": {"content": "你好"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChatAPI]:
    async with FakeWeChatAPI() as api:
        yield api


@pytest.fixture
async def replicas(fake: FakeWeChatAPI, db: Database) -> AsyncIterator[list[PlatformAPI]]:
    """Two replicas' clients for one Official Account, sharing the token store."""
    clients = []
    for _ in range(2):
        http = build_http(fake.url)
        fetch = partial(stable_token, http, app_id=fake.app_id, secret=fake.app_secret)
        clients.append(PlatformAPI(http, AccessTokens(TokenStore(db), "wechat:app", fetch)))
    yield clients
    for client in clients:
        await client.http.aclose()


async def test_replicas_share_one_stable_token(
    fake: FakeWeChatAPI, replicas: list[PlatformAPI]
) -> None:
    for client in replicas * 2:
        await client.post(SEND, MESSAGE)
    assert len(fake.calls_to("/cgi-bin/stable_token")) == 1
    assert fake.calls_to("/cgi-bin/stable_token")[0].json["force_refresh"] is False
    assert fake.sent_texts() == ["你好"] * 4  # sent as raw UTF-8, not \\u escapes
    assert "你好".encode() in fake.calls_to(SEND)[0].body


async def test_40001_refreshes_once_and_retries_once(
    fake: FakeWeChatAPI, replicas: list[PlatformAPI]
) -> None:
    first, second = replicas
    await first.post(SEND, MESSAGE)
    fake.invalidate_tokens()
    await first.post(SEND, MESSAGE)
    codes = [c.query["access_token"] for c in fake.calls_to(SEND)]
    assert codes == ["wechat-token-1", "wechat-token-1", "wechat-token-2"]
    await second.post(SEND, MESSAGE)  # the other replica finds the new token in the store
    assert len(fake.calls_to("/cgi-bin/stable_token")) == 2
    assert fake.calls_to(SEND)[-1].query["access_token"] == "wechat-token-2"


@pytest.mark.allow_warnings(r"rejected but still current")
async def test_a_revoked_token_that_stable_token_still_returns_is_forced_out(
    fake: FakeWeChatAPI, replicas: list[PlatformAPI]
) -> None:
    await replicas[0].post(SEND, MESSAGE)
    fake.revoke_current()
    await replicas[0].post(SEND, MESSAGE)
    forced = [c.json["force_refresh"] for c in fake.calls_to("/cgi-bin/stable_token")]
    assert forced == [False, False, True]
    assert fake.sent_texts() == ["你好", "你好"]


async def test_other_errors_are_typed_and_not_retried(
    fake: FakeWeChatAPI, replicas: list[PlatformAPI]
) -> None:
    fake.fail_next(SEND, 45047)
    with pytest.raises(WeChatAPIError) as failed:
        await replicas[0].post(SEND, MESSAGE)
    assert (failed.value.errcode, failed.value.code) == (45047, "45047")
    assert len(fake.calls_to(SEND)) == 1


async def test_media_download_and_its_text_plain_errors(
    fake: FakeWeChatAPI, replicas: list[PlatformAPI]
) -> None:
    fake.media["m1"] = Media(b"\x89PNG...", "image/png")
    assert await replicas[0].download("/cgi-bin/media/get", {"media_id": "m1"}) == (
        b"\x89PNG...",
        "image/png",
    )
    with pytest.raises(WeChatAPIError) as failed:
        await replicas[0].download("/cgi-bin/media/get", {"media_id": "missing"})
    assert failed.value.errcode == 40007


async def test_wrong_app_secret_is_a_clear_error(fake: FakeWeChatAPI, db: Database) -> None:
    http = build_http(fake.url)
    fetch = partial(stable_token, http, app_id=fake.app_id, secret="wrong")
    client = PlatformAPI(http, AccessTokens(TokenStore(db), "wechat:bad", fetch))
    try:
        with pytest.raises(WeChatAPIError) as failed:
            await client.post(SEND, MESSAGE)
    finally:
        await http.aclose()
    assert failed.value.errcode == 40125
    assert not fake.calls_to(SEND)


async def test_wecom_token_refresh_on_42001(fake: FakeWeChatAPI, db: Database) -> None:
    http = build_http(fake.url)
    fetch = partial(wecom_token, http, corp_id=fake.corp_id, secret=fake.corp_secret)
    client = PlatformAPI(http, AccessTokens(TokenStore(db), "wecom:c:1", fetch))
    body = {"touser": "zhangsan", "agentid": 1, "msgtype": "text", "text": {"content": "hi"}}
    try:
        await client.post("/cgi-bin/message/send", body)
        fake.invalidate_tokens()
        await client.post("/cgi-bin/message/send", body)
    finally:
        await http.aclose()
    assert len(fake.calls_to("/cgi-bin/gettoken")) == 2
    assert fake.sent_texts("/cgi-bin/message/send") == ["hi", "hi"]

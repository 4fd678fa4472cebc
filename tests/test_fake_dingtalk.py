"""The fake DingTalk speaks DingTalk's protocol: dingtalk-stream (the official SDK) pointed at it
gets tokens, parses its callbacks, delivers and streams AI cards, replies through session
webhooks, downloads files, and connects over Stream mode; the rest of the wire (OpenAPI sends,
media upload, rate limits, scripted failures) is driven with httpx in the documented shapes.

dingtalk-stream is synchronous underneath (``requests``), so its blocking calls run in a thread
(``asyncio.to_thread``) while the fake serves on the test's loop, and its Stream client runs on a
loop of its own in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import dingtalk_stream
import httpx
import pytest
from dingtalk_stream import card_replier, chatbot, stream

from tests.conftest import FakeClock
from tests.fakes.dingtalk import (
    CLIENT_ID,
    CLIENT_SECRET,
    TEMPLATE_ID,
    FakeDingTalk,
    group_space,
    robot_space,
)
from tests.fakes.dingtalk_inbound import (
    ALICE,
    BOB,
    card_action,
    picture,
    robot_message,
    sign,
    webhook_request,
)

PAYLOADS = Path(__file__).parent / "payloads" / "dingtalk"
GROUP = "cidGroupProduct0001=="
STREAMING = "/v1.0/card/streaming"


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk(clock=clock) as server:
        yield server


@pytest.fixture
def sdk(
    fake: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> dingtalk_stream.DingTalkStreamClient:
    """dingtalk-stream with every endpoint it reads at import time pointed at the fake."""
    for module in (stream, chatbot, card_replier):
        monkeypatch.setattr(module, "DINGTALK_OPENAPI_ENDPOINT", fake.api_url)
    open_api = fake.api_url + "/v1.0/gateway/connections/open"
    monkeypatch.setattr(stream.DingTalkStreamClient, "OPEN_CONNECTION_API", open_api)
    credential = dingtalk_stream.Credential(CLIENT_ID, CLIENT_SECRET)
    return dingtalk_stream.DingTalkStreamClient(credential)


def api(fake: FakeDingTalk, token: str = "") -> httpx.AsyncClient:
    headers = {"x-acs-dingtalk-access-token": token} if token else {}
    return httpx.AsyncClient(base_url=fake.api_url, headers=headers, timeout=5.0)


async def token_for(fake: FakeDingTalk) -> str:
    async with api(fake) as client:
        answer = await client.post(
            "/v1.0/oauth2/accessToken", json={"appKey": CLIENT_ID, "appSecret": CLIENT_SECRET}
        )
    return str(answer.json()["accessToken"])


def incoming(fake: FakeDingTalk, **kwargs: Any) -> dingtalk_stream.ChatbotMessage:
    return dingtalk_stream.ChatbotMessage.from_dict(robot_message(fake, **kwargs))


# ---- tokens ----------------------------------------------------------------------------------


async def test_access_token_is_issued_cached_and_expires(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    token = await asyncio.to_thread(sdk.get_access_token)
    assert token and await asyncio.to_thread(sdk.get_access_token) == token
    assert len(fake.calls_to("/v1.0/oauth2/accessToken")) == 1  # the SDK caches it
    assert fake.calls_to("/v1.0/oauth2/accessToken")[0].answer["expireIn"] == 7200
    assert await token_for(fake) == token  # asked again while valid: the same token

    fake.expire_tokens()
    async with api(fake, token) as client:
        refused = await client.post("/v1.0/robot/groupMessages/send", json={})
    assert refused.status_code == 400 and refused.json()["code"] == "InvalidAuthentication"
    assert "requestid" in refused.json()
    sdk.reset_access_token()
    assert await asyncio.to_thread(sdk.get_access_token) not in (None, token)


async def test_wrong_secret_and_missing_token_get_dingtalks_errors(fake: FakeDingTalk) -> None:
    async with api(fake) as client:
        wrong = await client.post(
            "/v1.0/oauth2/accessToken", json={"appKey": CLIENT_ID, "appSecret": "nope"}
        )
        missing = await client.put(STREAMING, json={})
    assert (wrong.status_code, wrong.json()["code"]) == (400, "invalidClientIdOrSecret")
    assert missing.json()["code"] == "AuthenticationFailed.MissingParameter"


# ---- callbacks: parsing and signatures ---------------------------------------------------------


def test_callbacks_parse_with_the_sdks_own_parser(fake: FakeDingTalk) -> None:
    group = incoming(fake, text="总结一下", group=GROUP, others_at=(BOB,))
    assert (group.conversation_type, group.conversation_id) == ("2", GROUP)
    assert group.text.content == " 总结一下" and group.is_in_at_list
    assert [u.staff_id for u in group.at_users] == [None, BOB.staff_id]
    assert group.session_webhook.startswith(fake.oapi_url + "/robot/sendBySession?session=")
    assert group.robot_code == CLIENT_ID and group.sender_staff_id == ALICE.staff_id

    single = incoming(fake, text="hi")
    assert (single.conversation_type, single.text.content) == ("1", "hi")
    assert single.session_webhook_expired_time - single.create_at == 5_400_000

    photo = dingtalk_stream.ChatbotMessage.from_dict(picture(fake, b"\x89PNG..."))
    assert photo.get_image_list() == [photo.image_content.download_code]


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "kind", "texts", "images"),
    [
        ("callback_text_single.json", "1", ["帮我总结一下本周的会议纪要"], None),
        ("callback_text_group_at.json", "2", [" @王小明 这个需求怎么评估？"], None),
        ("callback_text_group_only_mention.json", "2", [" "], None),
        ("callback_text_external_sender.json", "1", ["hello from a partner company"], None),
        ("callback_picture.json", "1", None, 1),
        ("callback_richtext.json", "1", ["看看这张图", "哪里有问题？"], 1),
        ("callback_file.json", "1", None, None),
        ("callback_audio.json", "1", None, None),
        ("callback_video.json", "1", None, None),
    ],
)
def test_captured_callbacks_parse_with_the_sdk(
    name: str, kind: str, texts: list[str] | None, images: int | None
) -> None:
    payload = load(name)
    message = dingtalk_stream.ChatbotMessage.from_dict(payload)
    assert message.conversation_type == kind and message.message_id == payload["msgId"]
    assert message.get_text_list() == texts
    assert len(message.get_image_list() or []) == (images or 0)
    assert message.session_webhook_expired_time - int(message.create_at) == 5_400_000


def test_builder_matches_the_captured_shapes(fake: FakeDingTalk) -> None:
    built = robot_message(fake, "x", group=GROUP, others_at=(ALICE,))
    assert built.keys() == load("callback_text_group_at.json").keys()
    assert robot_message(fake).keys() == load("callback_text_single.json").keys()
    frame = load("stream_frame_callback.json")
    parsed = dingtalk_stream.CallbackMessage.from_dict(frame)
    assert parsed.headers.topic == dingtalk_stream.ChatbotMessage.TOPIC
    assert parsed.data == load("callback_text_group_at.json")
    ping = dingtalk_stream.SystemMessage.from_dict(load("stream_frame_ping.json"))
    assert ping.headers.topic == "ping" and "opaque" in ping.data
    event = dingtalk_stream.EventMessage.from_dict(load("stream_frame_event.json"))
    assert event.headers.event_type == "chat_update_title"
    card = dingtalk_stream.CallbackMessage.from_dict(load("stream_frame_card_callback.json"))
    click = dingtalk_stream.CardCallbackMessage.from_dict(card.data)
    assert click.content["cardPrivateData"]["actionIds"] == ["feedback_like"]


async def test_error_bodies_match_the_captured_ones(fake: FakeDingTalk) -> None:
    errors = load("openapi_errors.json")
    async with api(fake, "stale") as client:
        stale = await client.put(STREAMING, json={})
    assert stale.status_code == errors["invalid_token"]["status"]
    assert stale.json().keys() == errors["invalid_token"]["body"].keys()
    assert stale.json()["code"] == errors["invalid_token"]["body"]["code"]


def test_webhook_signature_follows_the_documented_algorithm(fake: FakeDingTalk) -> None:
    headers, body = webhook_request(fake, robot_message(fake), timestamp_ms=1577262236757)
    # The docs' recipe, written out independently: HmacSHA256(appSecret, timestamp+"\n"+appSecret).
    mac = hmac.new(CLIENT_SECRET.encode(), b"1577262236757\n" + CLIENT_SECRET.encode(), "sha256")
    assert headers["sign"] == base64.b64encode(mac.digest()).decode()
    assert headers["timestamp"] == "1577262236757"
    assert sign("another-secret", 1577262236757) != headers["sign"]
    assert sign(CLIENT_SECRET, 1577262236758) != headers["sign"]
    assert json.loads(body)["robotCode"] == CLIENT_ID


# ---- AI cards ----------------------------------------------------------------------------------


@pytest.mark.allow_warnings("AICardReplier\\.async_streaming failed")
async def test_ai_card_streams_full_text_and_finalizes(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    replier = dingtalk_stream.AICardReplier(sdk, incoming(fake, group=GROUP))
    await asyncio.to_thread(sdk.get_access_token)  # its async calls still fetch tokens blocking
    track = await replier.async_create_and_deliver_card(TEMPLATE_ID, {"content": ""})
    card = fake.cards.cards[track]
    assert card.spaces == [group_space(GROUP)] and card.callback_type == "STREAM"
    create = fake.calls_to("/v1.0/card/instances/createAndDeliver")[0]
    assert create.json["imGroupOpenDeliverModel"]["robotCode"] == CLIENT_ID
    assert create.answer["result"]["deliverResults"][0]["spaceId"] == GROUP

    for text in ("Dify", "Dify is", "Dify is an LLM app platform."):
        await replier.async_streaming(track, "content", text, append=False, finished=False,
                                      failed=False)  # fmt: skip
        assert card.flow_status == "2"
    await replier.async_streaming(track, "content", "Dify is an LLM app platform.", append=False,
                                  finished=True, failed=False)  # fmt: skip

    updates = fake.calls_to(STREAMING)
    assert [c.json["isFull"] for c in updates] == [True] * 4
    assert len({c.json["guid"] for c in updates}) == 4  # a fresh guid per update
    assert card.data["content"] == "Dify is an LLM app platform." and card.flow_status == "3"
    assert [m["card"] for m in fake.messages(group_space(GROUP))] == [card]

    await replier.async_streaming(track, "content", "late", append=False, finished=False,
                                  failed=False)  # fmt: skip
    late = fake.calls_to(STREAMING)[-1]
    assert (late.status, late.answer["code"]) == (400, "card.streaming.finished")
    assert card.data["content"] == "Dify is an LLM app platform."


async def test_card_create_then_deliver_to_a_single_chat_and_fail(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    replier = dingtalk_stream.AICardReplier(sdk, incoming(fake))
    track = await asyncio.to_thread(replier.start, TEMPLATE_ID, {"content": ""})
    card = fake.cards.cards[track]
    assert card.spaces == [robot_space(ALICE.staff_id)] and card.flow_status == "1"
    deliver = fake.calls_to("/v1.0/card/instances/deliver")[0].json
    assert deliver["openSpaceId"] == f"dtv1.card//IM_ROBOT.{ALICE.staff_id}"

    await asyncio.to_thread(
        replier.put_card_data,
        track,
        {"title": "Dify"},
        cardUpdateOptions={"updateCardDataByKey": True},
    )
    assert card.data == {"content": "", "flowStatus": "1", "title": "Dify"}  # merged by key
    await asyncio.to_thread(replier.streaming, track, "content", "half", False, False, False)
    await asyncio.to_thread(replier.streaming, track, "content", " an answer", True, False, False)
    assert card.data["content"] == "half an answer"  # isFull false appends
    await asyncio.to_thread(replier.streaming, track, "content", "出错了", False, False, True)
    assert card.flow_status == "5" and card.data["content"] == "出错了"


async def test_streaming_guid_is_idempotent_and_keys_are_checked(fake: FakeDingTalk) -> None:
    token = await token_for(fake)
    async with api(fake, token) as client:
        body = {"cardTemplateId": TEMPLATE_ID, "outTrackId": "t-1", "openSpaceId":
                f"dtv1.card//IM_GROUP.{GROUP}", "imGroupOpenDeliverModel": {"robotCode": CLIENT_ID},
                "cardData": {"cardParamMap": {"content": ""}}}  # fmt: skip
        assert (await client.post("/v1.0/card/instances/createAndDeliver", json=body)).is_success
        update = {"outTrackId": "t-1", "guid": "g-1", "key": "content", "content": "a",
                  "isFull": False, "isFinalize": False, "isError": False}  # fmt: skip
        for _ in range(2):  # a retried request with the same guid is applied once
            assert (await client.put(STREAMING, json=update)).json() == {
                "success": True, "result": True}  # fmt: skip
        wrong_key = await client.put(STREAMING, json=update | {"guid": "g-2", "key": "answer"})
        numbers = await client.post(
            "/v1.0/card/instances",
            json=body | {"outTrackId": "t-2", "cardData": {"cardParamMap": {"n": 1}}},
        )
        unknown = await client.post(
            "/v1.0/card/instances", json=body | {"outTrackId": "t-3", "cardTemplateId": "x"}
        )
    assert fake.cards.cards["t-1"].data["content"] == "a"
    assert wrong_key.status_code == 400 and numbers.status_code == 400
    assert unknown.json()["code"] == "param.cardTemplateId.invalid"


@pytest.mark.allow_warnings("unknown message topic", "network exception")
async def test_card_callback_over_stream_updates_the_card(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    replier = dingtalk_stream.AICardReplier(sdk, incoming(fake, group=GROUP))
    track = await asyncio.to_thread(replier.create_and_deliver_card, TEMPLATE_ID, {"content": "x"})
    seen: list[dingtalk_stream.CardCallbackMessage] = []

    class Buttons(dingtalk_stream.CallbackHandler):
        async def process(self, message: dingtalk_stream.CallbackMessage) -> tuple[int, Any]:
            seen.append(dingtalk_stream.CardCallbackMessage.from_dict(message.data))
            return 200, {"cardData": {"cardParamMap": {"feedback": "like"}}}

    async with running(fake, sdk, cards=Buttons()):
        click = card_action(fake, fake.cards.cards[track], action="like", params={"rating": 5})
        message_id = await fake.gateway.card_callback(click)
        ack = await fake.gateway.acked(message_id)
    assert ack["code"] == 200 and seen[0].card_instance_id == track
    assert seen[0].content["cardPrivateData"] == {"actionIds": ["like"], "params": {"rating": 5}}
    assert fake.cards.cards[track].data["feedback"] == "like"


# ---- session webhook ---------------------------------------------------------------------------


async def test_session_webhook_reply_limits_and_expiry(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient, clock: FakeClock
) -> None:
    handler = dingtalk_stream.ChatbotHandler()
    handler.dingtalk_client = sdk
    message = incoming(fake, group=GROUP)
    answer = await asyncio.to_thread(handler.reply_markdown, "答复", "**Dify** 说：你好", message)
    assert answer == {"errcode": 0, "errmsg": "ok"}
    shown = fake.messages(group_space(GROUP))
    assert [(m["msgtype"], m["text"], m["atUserIds"]) for m in shown] == [
        ("markdown", "**Dify** 说：你好", [ALICE.staff_id])
    ]

    too_long = await asyncio.to_thread(handler.reply_text, "长" * 7000, message)
    # The SDK sends \uXXXX escapes (6 bytes a character) and returns DingTalk's error as success.
    assert too_long == {"errcode": 460101, "errmsg": "message too long, exceed 20000 bytes"}
    assert len(fake.calls_to("/robot/sendBySession")[-1].body) > 20000

    for _ in range(19):
        await asyncio.to_thread(handler.reply_text, "ok", message)
    limited = await asyncio.to_thread(handler.reply_text, "one too many", message)
    assert limited["errcode"] == 410100
    clock.now += 61
    assert (await asyncio.to_thread(handler.reply_text, "later", message))["errcode"] == 0

    clock.now += 5400
    expired = await asyncio.to_thread(handler.reply_text, "too late", message)
    assert expired == {"errcode": 300001, "errmsg": "session 不存在"}


# ---- OpenAPI sends, files, media -----------------------------------------------------------------


async def test_robot_openapi_sends_to_users_and_groups(fake: FakeDingTalk) -> None:
    fake.robot.users = {ALICE.staff_id}
    token = await token_for(fake)
    markdown = json.dumps({"title": "答复", "text": "# 你好"}, ensure_ascii=False)
    async with api(fake, token) as client:
        single = await client.post("/v1.0/robot/oToMessages/batchSend", json={
            "robotCode": CLIENT_ID, "userIds": [ALICE.staff_id, "ghost"],
            "msgKey": "sampleMarkdown", "msgParam": markdown})  # fmt: skip
        group = await client.post("/v1.0/robot/groupMessages/send", json={
            "robotCode": CLIENT_ID, "openConversationId": GROUP, "msgKey": "sampleText",
            "msgParam": json.dumps({"content": "hi"})})  # fmt: skip
        not_a_string = await client.post("/v1.0/robot/groupMessages/send", json={
            "robotCode": CLIENT_ID, "openConversationId": GROUP, "msgKey": "sampleText",
            "msgParam": {"content": "hi"}})  # fmt: skip
    assert single.json()["invalidStaffIdList"] == ["ghost"] and single.json()["processQueryKey"]
    assert [m["text"] for m in fake.messages(robot_space(ALICE.staff_id))] == ["# 你好"]
    assert group.is_success and [m["text"] for m in fake.messages(group_space(GROUP))] == ["hi"]
    assert not_a_string.json()["code"] == "param.msgParam.invalid"


@pytest.mark.allow_warnings("get_image_download_url")
async def test_message_file_download_link(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient, clock: FakeClock
) -> None:
    handler = dingtalk_stream.ChatbotHandler()
    handler.dingtalk_client = sdk
    data = bytes(range(256)) * 1000
    code = picture(fake, data)["content"]["downloadCode"]
    url = await asyncio.to_thread(handler.get_image_download_url, code)
    assert url.startswith(fake.files_url + "/file/")
    async with httpx.AsyncClient(timeout=5.0) as client:
        got = await client.get(url)
        assert got.content == data and got.headers["content-type"] == "image/png"
        clock.now += 3601
        assert (await client.get(url)).status_code == 403  # the link is temporary
    download = next(c for c in fake.calls if c.origin == "files")
    assert "x-acs-dingtalk-access-token" not in download.headers  # no token leaves for files
    assert await asyncio.to_thread(handler.get_image_download_url, "unknown") == ""
    assert fake.calls_to("/v1.0/robot/messageFiles/download")[-1].status == 400


async def test_media_upload_on_the_oapi_origin(fake: FakeDingTalk) -> None:
    token = await token_for(fake)
    files = {"media": ("report.pdf", b"%PDF-1.7 ...", "application/pdf")}
    async with httpx.AsyncClient(base_url=fake.oapi_url, timeout=5.0) as client:
        ok = await client.post(f"/media/upload?access_token={token}&type=file", files=files)
        bad = await client.post("/media/upload?access_token=nope&type=file", files=files)
    media_id = ok.json()["media_id"]
    assert ok.json()["errcode"] == 0 and fake.robot.uploaded[media_id].file_name == "report.pdf"
    assert bad.status_code == 200 and bad.json()["errcode"] == 40014


# ---- rate limits and failures ------------------------------------------------------------------


async def test_qps_limit_answers_403_and_frees_after_a_second(
    fake: FakeDingTalk, clock: FakeClock
) -> None:
    fake.qps_by_path[STREAMING] = 2
    token = await token_for(fake)
    async with api(fake, token) as client:
        answers = [await client.put(STREAMING, json={}) for _ in range(3)]
        clock.now += 1.0
        after = await client.put(STREAMING, json={})
    assert [a.status_code for a in answers] == [400, 400, 403]  # bad bodies still count
    assert answers[2].json()["code"] == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    assert "retry-after" not in answers[2].headers  # DingTalk gives no hint: the window is 1 s
    assert after.status_code == 400 and len(fake.limited) == 1


@pytest.mark.allow_warnings(
    "get dingtalk access token failed", "Error handling request", "dropped the connection"
)
async def test_scripted_failures(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    fake.fail_next("/v1.0/oauth2/accessToken", status=503)
    assert await asyncio.to_thread(sdk.get_access_token) is None  # the SDK logs and gives up
    fake.throttle_next("/v1.0/robot/groupMessages/send", global_limit=True)
    fake.hang_next("/v1.0/robot/oToMessages/batchSend")
    fake.drop_next("/v1.0/card/instances")
    token = await token_for(fake)
    async with api(fake, token) as client:
        throttled = await client.post("/v1.0/robot/groupMessages/send", json={})
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1.0/robot/oToMessages/batchSend", json={}, timeout=0.2)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v1.0/card/instances", json={})
    assert throttled.json()["code"] == "Forbidden.AccessDenied.QpsLimitForApi"
    fake.fail_session_next(130101, "send too fast")
    session = robot_message(fake)["sessionWebhook"]
    async with httpx.AsyncClient(timeout=5.0) as client:
        answer = await client.post(session, json={"msgtype": "text", "text": {"content": "x"}})
    assert answer.json() == {"errcode": 130101, "errmsg": "send too fast"}


async def test_foreign_origin_records_what_escaped(fake: FakeDingTalk) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        await client.post(fake.foreign_url + "/robot/sendBySession?session=x", json={})
    assert [c.path for c in fake.foreign_calls] == ["/robot/sendBySession"]


# ---- Stream mode -------------------------------------------------------------------------------


class Recorder(dingtalk_stream.ChatbotHandler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dingtalk_stream.ChatbotMessage] = []

    async def process(self, callback: dingtalk_stream.CallbackMessage) -> tuple[int, str]:
        self.messages.append(dingtalk_stream.ChatbotMessage.from_dict(callback.data))
        return dingtalk_stream.AckMessage.STATUS_OK, "OK"


class Events(dingtalk_stream.EventHandler):
    async def process(self, event: dingtalk_stream.EventMessage) -> tuple[int, str]:
        return dingtalk_stream.AckMessage.STATUS_OK, "OK"


class running:
    """dingtalk-stream's client on its own loop in a thread, so its ``requests`` calls block that
    loop and not the fake's. 0.24.3 has no ``stop()`` and swallows a cancellation (it sleeps 10 s
    and reconnects), so stopping first closes the gateway to it, waits until its websocket is
    closed cleanly, then cancels until the thread ends."""

    def __init__(
        self,
        fake: FakeDingTalk,
        client: dingtalk_stream.DingTalkStreamClient,
        *,
        bot: dingtalk_stream.ChatbotHandler | None = None,
        cards: dingtalk_stream.CallbackHandler | None = None,
    ) -> None:
        if bot is not None:
            client.register_callback_handler(dingtalk_stream.ChatbotMessage.TOPIC, bot)
        if cards is not None:
            topic = dingtalk_stream.CallbackHandler.TOPIC_CARD_CALLBACK
            client.register_callback_handler(topic, cards)
        client.register_all_event_handler(Events())
        self._fake, self._client = fake, client
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            self._started.set()
            await self._client.start()

        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())

    async def __aenter__(self) -> running:
        self._thread.start()
        await asyncio.to_thread(self._started.wait, 5)
        await self._fake.gateway.wait_connected()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._fake.gateway.accepting = False
        await self._fake.gateway.close()
        await self._fake.gateway.wait_disconnected()
        while self._thread.is_alive():
            assert self._loop is not None and self._task is not None
            self._loop.call_soon_threadsafe(self._task.cancel)
            await asyncio.to_thread(self._thread.join, 0.05)


@pytest.mark.allow_warnings("unknown message topic", "network exception")
async def test_stream_mode_with_the_sdk(
    fake: FakeDingTalk, sdk: dingtalk_stream.DingTalkStreamClient
) -> None:
    bot = Recorder()
    async with running(fake, sdk, bot=bot):
        opened = fake.calls_to("/v1.0/gateway/connections/open")[0].json
        assert opened["clientId"] == CLIENT_ID and opened["ua"].startswith("dingtalk-sdk-python")
        assert {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"} in opened["subscriptions"]
        assert {"type": "EVENT", "topic": "*"} in opened["subscriptions"]

        ping = await fake.gateway.ping()
        assert json.loads((await fake.gateway.acked(ping))["data"]) == {
            "opaque": fake.gateway.sent[ping]["opaque"]}  # fmt: skip

        payload = robot_message(fake, "你好 Dify", group=GROUP)
        message_id = await fake.gateway.bot_message(payload)
        ack = await fake.gateway.acked(message_id)
        assert ack["code"] == 200 and ack["headers"]["messageId"] == message_id
        assert bot.messages[0].text.content == " 你好 Dify"
        assert bot.messages[0].message_id == payload["msgId"]

        del fake.gateway.acks[message_id]
        await fake.gateway.redeliver(message_id)
        await fake.gateway.acked(message_id)
        assert len(bot.messages) == 2  # the SDK does not deduplicate: the adapter must

        event = await fake.gateway.event("chat_update_title", {"title": "新群名"})
        assert (await fake.gateway.acked(event))["code"] == 200

        first = fake.gateway.connections[0]
        await fake.gateway.disconnect()
        await fake.until(lambda: fake.gateway.opened == 2 and fake.gateway.connections != [first]
                         and bool(fake.gateway.connections), what="a reconnection")  # fmt: skip


async def test_gateway_refuses_bad_credentials_and_reused_tickets(fake: FakeDingTalk) -> None:
    async with api(fake) as client:
        bad = await client.post("/v1.0/gateway/connections/open",
                                json={"clientId": CLIENT_ID, "clientSecret": "x"})  # fmt: skip
        subscriptions = [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
        good = await client.post("/v1.0/gateway/connections/open", json={
            "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
            "subscriptions": subscriptions})  # fmt: skip
    assert bad.json()["code"] == "invalidClientIdOrSecret"
    url = f"{good.json()['endpoint']}?ticket={good.json()['ticket']}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await fake.gateway.wait_connected()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)  # a ticket makes one connection only
        await ws.close()
    assert fake.gateway.refused_tickets == 1

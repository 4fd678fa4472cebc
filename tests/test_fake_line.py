"""line-bot-sdk v3 pointed at the fake LINE Messaging API: proof that the fake speaks LINE's
protocol (auth, reply tokens, push with retry keys, limits, quick replies, loading animation,
content on the data API, 429/5xx), and that its webhook bodies pass the SDK's own signature check
and parser."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from linebot.v3 import oauth
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    ErrorResponse,
    ImageMessage,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
    TextMessage,
)
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    AllMentionee,
    AudioMessageContent,
    FileMessageContent,
    FollowEvent,
    GroupSource,
    ImageMessageContent,
    JoinEvent,
    MessageEvent,
    PostbackEvent,
    RoomSource,
    TextMessageContent,
    UnsendEvent,
    UserMentionee,
    UserSource,
)
from pydantic.v1 import ValidationError

from tests.conftest import FakeClock
from tests.fakes.line import ACCESS_TOKEN, MONTHLY_LIMIT, RATE_LIMITED, FakeLine
from tests.fakes.line_webhook import BOT_USER_ID, CHANNEL_SECRET, LineEvents, sign

PUSH, REPLY = "/v2/bot/message/push", "/v2/bot/message/reply"
PAYLOADS = Path(__file__).parent / "payloads" / "line"


@pytest.fixture
async def line(clock: FakeClock) -> AsyncIterator[FakeLine]:
    async with FakeLine(clock=clock) as fake:
        yield fake


@pytest.fixture
async def api(line: FakeLine) -> AsyncIterator[AsyncMessagingApi]:
    config = Configuration(host=line.api_url, access_token=ACCESS_TOKEN)
    async with AsyncApiClient(config) as client:
        yield AsyncMessagingApi(client)


@pytest.fixture
async def blob(line: FakeLine) -> AsyncIterator[AsyncMessagingApiBlob]:
    config = Configuration(host=line.data_url, access_token=ACCESS_TOKEN)
    async with AsyncApiClient(config) as client:
        yield AsyncMessagingApiBlob(client)


def text(body: str, *buttons: str) -> TextMessage:
    items = [QuickReplyItem(action=PostbackAction(label=b, data=f"pb:{b}")) for b in buttons]
    return TextMessage(text=body, quick_reply=QuickReply(items=items) if items else None)


def line_error(exc: ApiException) -> ErrorResponse:
    """The error body, read with the SDK's own model (LINE's documented error shape)."""
    return ErrorResponse.from_json(exc.body)


# ---- auth ------------------------------------------------------------------------------------


async def test_bot_info_with_the_channel_access_token(line: FakeLine, api: AsyncMessagingApi):
    info = await api.get_bot_info()
    assert (info.user_id, info.chat_mode) == (BOT_USER_ID, "bot")
    (call,) = line.calls_to("/v2/bot/info")
    assert call.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.headers["User-Agent"].startswith("line-bot-sdk-python/")
    assert call.status == 200


async def test_a_wrong_or_missing_token_gets_line_401(line: FakeLine):
    config = Configuration(host=line.api_url, access_token="not-a-token")
    async with AsyncApiClient(config) as client:
        with pytest.raises(ApiException) as caught:
            await AsyncMessagingApi(client).get_bot_info()
    assert caught.value.status == 401
    assert line_error(caught.value).message.startswith("Authentication failed due to")
    async with aiohttp.ClientSession() as session, session.get(f"{line.api_url}/v2/bot/info") as r:
        assert r.status == 401
        assert (await r.json())["message"].startswith("Authorization header required")
        assert r.headers["x-line-request-id"]


async def test_stateless_tokens_are_issued_and_expire_after_15_minutes(
    line: FakeLine, clock: FakeClock
):
    async with oauth.AsyncApiClient(oauth.Configuration(host=line.api_url)) as client:
        issued = await oauth.AsyncChannelAccessToken(client).issue_stateless_channel_token(
            grant_type="client_credentials",
            client_id=line.channel_id,
            client_secret=CHANNEL_SECRET,
        )
        with pytest.raises(oauth.ApiException) as refused:
            await oauth.AsyncChannelAccessToken(client).issue_stateless_channel_token(
                grant_type="client_credentials", client_id=line.channel_id, client_secret="x"
            )
    assert (issued.token_type, issued.expires_in) == ("Bearer", 900)
    assert refused.value.status == 400
    config = Configuration(host=line.api_url, access_token=issued.access_token)
    async with AsyncApiClient(config) as client:
        assert (await AsyncMessagingApi(client).get_bot_info()).user_id == BOT_USER_ID
        clock.now += 901
        with pytest.raises(ApiException) as expired:
            await AsyncMessagingApi(client).get_bot_info()
    assert expired.value.status == 401


# ---- reply -----------------------------------------------------------------------------------


async def test_a_reply_token_works_once(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user()
    event = line.events.text("hi", user=user)
    request = ReplyMessageRequest(
        reply_token=event["replyToken"], messages=[text("hello", "Good", "Bad")]
    )
    sent = await api.reply_message(request)
    assert len(sent.sent_messages) == 1 and sent.sent_messages[0].quote_token
    assert line.texts(user) == ["hello"]
    assert line.quick_reply(user) == ["Good", "Bad"]
    with pytest.raises(ApiException) as again:
        await api.reply_message(request)
    assert again.value.status == 400
    assert line_error(again.value).message == "Invalid reply token"
    assert line.texts(user) == ["hello"]


async def test_a_reply_token_expires_after_about_a_minute(
    line: FakeLine, api: AsyncMessagingApi, clock: FakeClock
):
    user = line.events.user()
    event = line.events.text("slow question", user=user)
    clock.now += 61
    with pytest.raises(ApiException) as expired:
        await api.reply_message(
            ReplyMessageRequest(reply_token=event["replyToken"], messages=[text("late")])
        )
    assert (expired.value.status, line_error(expired.value).message) == (400, "Invalid reply token")
    assert line.texts(user) == []


async def test_a_retry_key_on_reply_is_refused(line: FakeLine, api: AsyncMessagingApi):
    event = line.events.text("hi", user=line.events.user())
    request = ReplyMessageRequest(reply_token=event["replyToken"], messages=[text("x")])
    with pytest.raises(ApiException) as refused:
        await api.reply_message(request, _headers={"X-Line-Retry-Key": str(uuid.uuid4())})
    assert refused.value.status == 400
    assert (await api.reply_message(request)).sent_messages  # the token was not spent


async def test_an_invalid_body_sends_nothing_and_keeps_the_token(
    line: FakeLine, api: AsyncMessagingApi
):
    user = line.events.user()
    token = line.events.text("hi", user=user)["replyToken"]
    too_long = "👍" * 2501  # 5002 UTF-16 code units
    with pytest.raises(ApiException) as refused:
        await api.reply_message(
            ReplyMessageRequest(reply_token=token, messages=[text("ok"), text(too_long)])
        )
    body = line_error(refused.value)
    assert body.message == "The request body has 1 error(s)"
    assert [(d.var_property, d.message) for d in body.details] == [
        ("messages[1].text", "Length must be between 0 and 5000")
    ]
    assert line.texts(user) == []
    five = [text("👍" * 2500) for _ in range(5)]  # 5 messages of exactly 5000: the maximum
    sent = await api.reply_message(ReplyMessageRequest(reply_token=token, messages=five))
    assert len(sent.sent_messages) == 5


async def test_the_sdk_itself_refuses_six_messages_and_fourteen_buttons():
    with pytest.raises(ValidationError):
        ReplyMessageRequest(reply_token="t", messages=[text("x")] * 6)
    with pytest.raises(ValidationError):
        text("x", *(f"b{i}" for i in range(14)))


async def test_quick_reply_rules_as_line_checks_them(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user()
    token = line.events.text("hi", user=user)["replyToken"]
    with pytest.raises(ApiException) as long_label:
        await api.reply_message(
            ReplyMessageRequest(reply_token=token, messages=[text("x", "a" * 21)])
        )
    (detail,) = line_error(long_label.value).details
    assert detail.var_property == "messages[0].quickReply.items[0].action.label"
    # Fourteen buttons: the SDK refuses them itself, so send the JSON as another client would.
    items = [{"type": "action", "action": {"type": "message", "label": f"q{i}", "text": "t"}}
             for i in range(14)]  # fmt: skip
    body = {"replyToken": token, "messages": [{"type": "text", "text": "x",
                                               "quickReply": {"items": items}}]}  # fmt: skip
    status, answer = await post_json(line, REPLY, body)
    assert status == 400
    assert answer["details"] == [
        {"message": "Size must be between 1 and 13", "property": "messages[0].quickReply.items"}
    ]
    # Labels count grapheme clusters: a flag, a family and a skin tone are one each.
    labels = [f"{i:02d}-" + "x" * 14 + "🇯🇵👨‍👩‍👧🫶🏽" for i in range(13)]
    thirteen = text("pick one", *labels)
    await api.reply_message(ReplyMessageRequest(reply_token=token, messages=[thirteen]))
    assert line.quick_reply(user) == labels


async def test_image_urls_must_be_https(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user()
    token = line.events.text("draw", user=user)["replyToken"]
    plain = ImageMessage(
        original_content_url="http://files.example/cat.png",
        preview_image_url="https://files.example/cat-small.png",
    )
    with pytest.raises(ApiException) as refused:
        await api.reply_message(ReplyMessageRequest(reply_token=token, messages=[plain]))
    (detail,) = line_error(refused.value).details
    assert detail.var_property == "messages[0].originalContentUrl"
    plain.original_content_url = "https://files.example/cat.png"
    await api.reply_message(ReplyMessageRequest(reply_token=token, messages=[plain]))
    assert line.chats[user][0].message["type"] == "image"


# ---- push ------------------------------------------------------------------------------------


async def test_a_retry_key_makes_a_lost_push_safe_to_retry(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user()
    key = str(uuid.uuid4())
    line.fail_next(PUSH, 500, after_accept=True)  # delivered, but the answer is a 500
    request = PushMessageRequest(to=user, messages=[text("the answer")])
    with pytest.raises(ApiException) as lost:
        await api.push_message(request, x_line_retry_key=key)
    assert lost.value.status == 500
    with pytest.raises(ApiException) as conflict:
        await api.push_message(request, x_line_retry_key=key)
    first, second = line.calls_to(PUSH)
    assert conflict.value.status == 409
    assert conflict.value.headers["x-line-accepted-request-id"] == first.request_id
    assert conflict.value.headers["x-line-request-id"] == second.request_id
    sent = line_error(conflict.value).sent_messages
    assert [s.id for s in sent] == [line.chats[user][0].id]
    assert line.texts(user) == ["the answer"]  # exactly once
    assert line.pushed == 1


async def test_a_push_refused_before_acceptance_can_be_retried(
    line: FakeLine, api: AsyncMessagingApi
):
    user = line.events.user()
    key = str(uuid.uuid4())
    line.fail_next(PUSH, 503)
    request = PushMessageRequest(to=user, messages=[text("one"), text("two")])
    with pytest.raises(ApiException) as unavailable:
        await api.push_message(request, x_line_retry_key=key)
    assert unavailable.value.status == 503
    sent = await api.push_message(request, x_line_retry_key=key)
    assert len(sent.sent_messages) == 2
    assert line.texts(user) == ["one", "two"]


async def test_push_to_groups_and_unknown_recipients(line: FakeLine, api: AsyncMessagingApi):
    group = line.events.group()
    await api.push_message(PushMessageRequest(to=group, messages=[text("to all")]))
    assert line.texts(group) == ["to all"]
    with pytest.raises(ApiException) as unknown:
        await api.push_message(PushMessageRequest(to="U" + "0" * 32, messages=[text("x")]))
    assert line_error(unknown.value).message == "Failed to send messages"
    with pytest.raises(ApiException) as bad_key:
        await api.push_message(
            PushMessageRequest(to=group, messages=[text("x")]), x_line_retry_key="not-a-uuid"
        )
    assert bad_key.value.status == 400


async def test_the_monthly_push_quota_answers_429_while_replies_stay_free(clock: FakeClock):
    async with FakeLine(clock=clock, push_quota=2) as line:
        config = Configuration(host=line.api_url, access_token=ACCESS_TOKEN)
        async with AsyncApiClient(config) as client:
            api = AsyncMessagingApi(client)
            user = line.events.user()
            token = line.events.text("hi", user=user)["replyToken"]
            with pytest.raises(ApiException) as over:
                await api.push_message(PushMessageRequest(to=user, messages=[text("a")] * 3))
            assert (over.value.status, line_error(over.value).message) == (429, MONTHLY_LIMIT)
            await api.reply_message(ReplyMessageRequest(reply_token=token, messages=[text("r")]))
            assert (await api.get_message_quota()).value == 2
            assert (await api.get_message_quota_consumption()).total_usage == 0


# ---- limits and failures ---------------------------------------------------------------------


async def test_429_carries_line_body_and_no_retry_after(
    line: FakeLine, api: AsyncMessagingApi, clock: FakeClock
):
    group = line.events.group()
    line.fail_next(PUSH, 429)
    with pytest.raises(ApiException) as limited:
        await api.push_message(PushMessageRequest(to=group, messages=[text("x")]))
    assert (limited.value.status, line_error(limited.value).message) == (429, RATE_LIMITED)
    assert "Retry-After" not in limited.value.headers
    line.limit("/v2/bot/info", 2)  # per second
    await api.get_bot_info()
    await api.get_bot_info()
    with pytest.raises(ApiException) as per_second:
        await api.get_bot_info()
    assert per_second.value.status == 429
    clock.now += 1
    await api.get_bot_info()
    assert line.texts(group) == []


async def test_a_hung_call_waits_until_released(line: FakeLine, api: AsyncMessagingApi):
    line.fail_next("/v2/bot/info", 502, hang=True)
    call = asyncio.create_task(api.get_bot_info())
    await line.wait_for("/v2/bot/info")
    await asyncio.sleep(0)  # let the SDK's task run once more: it must still be waiting
    assert not call.done()
    line.release_hangs()
    with pytest.raises(ApiException) as failed:
        await call
    assert failed.value.status == 502


# ---- loading animation -----------------------------------------------------------------------


async def test_the_loading_animation_in_one_to_one_chats_only(
    line: FakeLine, api: AsyncMessagingApi, clock: FakeClock
):
    user, group = line.events.user(), line.events.group()
    answer = await api.show_loading_animation_with_http_info(
        ShowLoadingAnimationRequest(chat_id=user, loading_seconds=20)
    )
    assert answer.status_code == 202
    assert line.is_loading(user)
    clock.now += 21
    assert not line.is_loading(user)
    await api.show_loading_animation(ShowLoadingAnimationRequest(chat_id=user, loading_seconds=60))
    await api.push_message(PushMessageRequest(to=user, messages=[text("done")]))
    assert not line.is_loading(user)  # a message from the bot ends it
    for chat, seconds in ((group, 20), (user, 7)):
        with pytest.raises(ApiException) as refused:
            await api.show_loading_animation(
                ShowLoadingAnimationRequest(chat_id=chat, loading_seconds=seconds)
            )
        assert refused.value.status == 400


# ---- content ---------------------------------------------------------------------------------


async def test_content_is_downloaded_from_the_data_api(line: FakeLine, blob: AsyncMessagingApiBlob):
    user = line.events.user()
    image = line.events.image(user=user, data=b"\xff\xd8\xff jpeg bytes")
    message_id = image["message"]["id"]
    assert await blob.get_message_content(message_id) == b"\xff\xd8\xff jpeg bytes"
    (call,) = line.calls_to(f"/v2/bot/message/{message_id}/content")
    assert call.origin == "data" and call.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    wrong_host = f"{line.api_url}/v2/bot/message/{message_id}/content"
    auth = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as session, session.get(wrong_host) as r:
        assert r.status == 404
    with pytest.raises(ApiException) as missing:
        await blob.get_message_content("1")
    assert missing.value.status == 404


async def test_large_media_answers_202_while_being_prepared(
    line: FakeLine, blob: AsyncMessagingApiBlob
):
    user = line.events.user()
    video = line.events.video(user=user)
    message_id = video["message"]["id"]
    line.add_content(message_id, b"\x00" * 4096, "video/mp4", polls_before_ready=2)
    status = await blob.get_message_content_transcoding_by_message_id(message_id)
    assert status.status == "processing"
    preparing = await blob.get_message_content_with_http_info(message_id)
    assert (preparing.status_code, preparing.data) == (202, None)
    ready = await blob.get_message_content_with_http_info(message_id)
    assert (ready.status_code, len(ready.data)) == (200, 4096)
    assert ready.headers["Content-Type"] == "video/mp4"
    status = await blob.get_message_content_transcoding_by_message_id(message_id)
    assert status.status == "succeeded"


async def test_profiles_carry_the_language(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user("Somchai", language="th")
    profile = await api.get_profile(user)
    assert (profile.display_name, profile.language) == ("Somchai", "th")


# ---- webhooks --------------------------------------------------------------------------------


def parse(body: bytes, signature: str) -> list[Any]:
    return WebhookParser(CHANNEL_SECRET).parse(body.decode(), signature)


async def test_signed_bodies_pass_the_sdk_parser_and_forged_ones_fail(line: FakeLine):
    user, group = line.events.user(), line.events.group()
    said = "@Dify Bot まとめて"
    events = [
        line.events.text("こんにちは", user=user),
        line.events.text(said, user=user, chat=group, mentions=[line.events.mention(said)]),
        line.events.postback("dify:like", user=user),
    ]
    body = line.events.body(*events)
    first, second, third = parse(body, line.events.headers(body)["X-Line-Signature"])
    assert isinstance(first.message, TextMessageContent)
    assert isinstance(first.source, UserSource) and first.source.user_id == user
    assert first.reply_token == events[0]["replyToken"]
    assert isinstance(second.source, GroupSource) and second.source.group_id == group
    (mentionee,) = second.message.mention.mentionees
    assert isinstance(mentionee, UserMentionee) and mentionee.is_self
    assert said[mentionee.index : mentionee.index + mentionee.length] == "@Dify Bot"
    assert isinstance(third, PostbackEvent) and third.postback.data == "dify:like"
    with pytest.raises(InvalidSignatureError):
        parse(body, sign(body, "another-secret"))
    with pytest.raises(InvalidSignatureError):
        parse(body.replace("まとめて".encode(), "消して".encode()), sign(body))


async def test_a_redelivery_is_the_same_event_flagged(line: FakeLine, api: AsyncMessagingApi):
    user = line.events.user()
    event = line.events.text("hi", user=user)
    first = ReplyMessageRequest(reply_token=event["replyToken"], messages=[text("a")])
    await api.reply_message(first)
    body = line.events.body(LineEvents.redelivered(event))
    (again,) = parse(body, sign(body))
    assert again.delivery_context.is_redelivery
    assert again.webhook_event_id == event["webhookEventId"] and len(again.webhook_event_id) == 26
    with pytest.raises(ApiException) as spent:  # its reply token was used by the first delivery
        await api.reply_message(
            ReplyMessageRequest(reply_token=again.reply_token, messages=[text("b")])
        )
    assert line_error(spent.value).message == "Invalid reply token"


async def test_deliver_posts_as_line_does(line: FakeLine):
    received: list[tuple[int, list[Any]]] = []

    async def webhook(request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            events = parse(raw.encode(), request.headers["X-Line-Signature"])
        except InvalidSignatureError:
            return web.Response(status=400)
        received.append((len(raw), events))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/line", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/line"
    try:
        user = line.events.user()
        assert await line.events.deliver(url, line.events.follow(user=user)) == (200, "OK")
        forged = line.events.text("x", user=user)
        status, _ = await line.events.deliver(url, forged, signature="AA==")
        assert status == 400
        assert await line.events.deliver(url) == (200, "OK")  # the console's "Verify": no events
    finally:
        await runner.cleanup()
    assert [type(e) for _, events in received for e in events] == [FollowEvent]


EXPECTED = {
    "text_user": (MessageEvent, TextMessageContent, UserSource),
    "text_group_mention": (MessageEvent, TextMessageContent, GroupSource),
    "text_group_other_mention": (MessageEvent, TextMessageContent, GroupSource),
    "text_group_no_mention": (MessageEvent, TextMessageContent, GroupSource),
    "text_room_mention_emoji": (MessageEvent, TextMessageContent, RoomSource),
    "text_quote_reply": (MessageEvent, TextMessageContent, UserSource),
    "text_redelivered": (MessageEvent, TextMessageContent, UserSource),
    "image_user": (MessageEvent, ImageMessageContent, UserSource),
    "image_set_group": (MessageEvent, ImageMessageContent, GroupSource),
    "image_external": (MessageEvent, ImageMessageContent, UserSource),
    "audio_user": (MessageEvent, AudioMessageContent, UserSource),
    "file_user": (MessageEvent, FileMessageContent, UserSource),
    "postback_feedback": (PostbackEvent, None, UserSource),
    "postback_group": (PostbackEvent, None, GroupSource),
    "follow": (FollowEvent, None, UserSource),
    "join_group": (JoinEvent, None, GroupSource),
    "unsend_user": (UnsendEvent, None, UserSource),
}


@pytest.mark.parametrize("name", sorted(p.stem for p in PAYLOADS.glob("*.json")))
def test_captured_payloads_parse_with_the_sdk(name: str):
    body = (PAYLOADS / f"{name}.json").read_bytes()
    payload = WebhookParser(CHANNEL_SECRET).parse(body.decode(), sign(body), as_payload=True)
    assert payload.destination == BOT_USER_ID
    raw = json.loads(body)["events"]
    assert len(payload.events) == len(raw)
    for event, data in zip(payload.events, raw, strict=True):
        assert event.webhook_event_id == data["webhookEventId"]
        assert event.delivery_context.is_redelivery == (name == "text_redelivered")
    if name in EXPECTED:
        kind, content, source = EXPECTED[name]
        event = payload.events[0]
        assert isinstance(event, kind) and isinstance(event.source, source)
        assert content is None or isinstance(event.message, content)
    if name == "text_room_mention_emoji":
        selves = payload.events[0].message.mention.mentionees
        assert isinstance(selves[0], UserMentionee) and selves[0].is_self
        assert isinstance(selves[1], AllMentionee)


async def post_json(line: FakeLine, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    url = f"{line.api_url}{path}"
    async with aiohttp.ClientSession(headers=headers) as session, session.post(url, json=body) as r:
        return r.status, await r.json()

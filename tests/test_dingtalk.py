"""End to end: DingTalk robot callbacks (HTTP mode and Stream mode) into the real difybot wiring,
against the fake DingTalk and the fake Dify; inbound requests signed as DingTalk signs them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, StreamError
from tests.fakes.dify_routes import SUGGESTIONS
from tests.fakes.dingtalk import TEMPLATE_ID, FakeDingTalk, group_space, robot_space
from tests.fakes.dingtalk_cards import FAILED, FINISHED
from tests.fakes.dingtalk_inbound import (
    ALICE,
    BOB,
    card_action,
    file_message,
    picture,
    robot_message,
    webhook_request,
)
from tests.fakes.wechat_app import Running, difybot

GROUP = "cidGroupProduct0001=="
STREAMING = "/v1.0/card/streaming"
SESSION = "/robot/sendBySession"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


def settings(fake: FakeDingTalk, **extra: Any) -> dict[str, Any]:
    return {
        "dingtalk_client_id": fake.client_id, "dingtalk_client_secret": fake.client_secret,
        "dingtalk_api_base": fake.api_url, "dingtalk_oapi_base": fake.oapi_url,
        "dingtalk_event_mode": "webhook", **extra,
    }  # fmt: skip


async def post(
    running: Running, fake: FakeDingTalk, payload: dict[str, Any], **signing: Any
) -> int:
    headers, body = webhook_request(fake, payload, **signing)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/dingtalk", data=body, headers=headers) as response,
    ):
        return response.status


async def test_a_single_chat_is_answered_through_its_session_webhook_as_markdown(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, robot_message(fake, "**天气**怎么样？")) == 200
        await fake.wait_for(SESSION, 2)
    thinking, answer = fake.messages(robot_space(ALICE.staff_id))
    assert (thinking["msgtype"], thinking["text"]) == ("text", "思考中…")
    assert answer["msgtype"] == "markdown"
    assert answer["text"] == "echo: **天气**怎么样？"
    assert fake.foreign_calls == [] and fake.robot.posted == []
    (asked,) = dify.requests_to("/chat-messages")
    assert asked.json["user"] == f"dingtalk:{fake.corp_id}:{ALICE.staff_id}"


async def test_group_members_continue_the_groups_one_conversation(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        await post(running, fake, robot_message(fake, "第一个问题", group=GROUP, sender=ALICE))
        await fake.wait_for(SESSION, 2)
        await post(running, fake, robot_message(fake, "第二个问题", group=GROUP, sender=BOB))
        await fake.wait_for(SESSION, 4)
    first, second = dify.requests_to("/chat-messages")
    assert first.json["user"] == second.json["user"] == f"dingtalk:{fake.corp_id}:{GROUP}"
    assert first.json["query"] == "第一个问题"  # the leading space after the @ is gone
    assert not first.json.get("conversation_id")
    assert second.json["conversation_id"]
    texts = [m["text"] for m in fake.messages(group_space(GROUP)) if m["msgtype"] == "markdown"]
    assert texts == ["echo: 第一个问题", "echo: 第二个问题"]


async def test_groups_can_keep_one_conversation_per_member(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    config = settings(fake, dingtalk_group_scope="user")
    async with difybot(dify, tmp_path / "db", **config) as running:
        await post(running, fake, robot_message(fake, "一", group=GROUP, sender=ALICE))
        await fake.wait_for(SESSION, 2)
        await post(running, fake, robot_message(fake, "二", group=GROUP, sender=BOB))
        await fake.wait_for(SESSION, 4)
    first, second = dify.requests_to("/chat-messages")
    assert first.json["user"].endswith(ALICE.staff_id)
    assert second.json["user"].endswith(BOB.staff_id)
    assert not second.json.get("conversation_id")


async def test_a_redelivered_msg_id_is_answered_once(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    payload = robot_message(fake, "只回答一次")
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, payload) == 200
        await fake.wait_for(SESSION, 2)
        assert await post(running, fake, payload) == 200  # DingTalk's retry: same body, new stamp
        await post(running, fake, robot_message(fake, "下一个"))  # something after it, to wait on
        await fake.wait_for(SESSION, 4)
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == ["只回答一次", "下一个"]


async def test_a_redelivery_to_another_replica_is_answered_once(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    payload = robot_message(fake, "两个副本")
    async with (
        difybot(dify, tmp_path / "db", **settings(fake)) as a,
        difybot(dify, tmp_path / "db", **settings(fake)) as b,
    ):
        assert await post(a, fake, payload) == 200
        assert await post(b, fake, payload) == 200
        await fake.wait_for(SESSION, 2)
        await dify.wait_streams(0)
    assert len(dify.requests_to("/chat-messages")) == 1


@pytest.mark.parametrize(
    ("signing", "status"),
    [
        ({"secret": "not-the-app-secret"}, 403),
        ({"timestamp_ms": int((time.time() - 3700) * 1000)}, 403),
        ({"timestamp_ms": int((time.time() + 3700) * 1000)}, 403),
    ],
    ids=["bad-sign", "stale", "future"],
)
async def test_forged_or_stale_callbacks_are_refused(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path, signing: dict[str, Any], status: int
) -> None:
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, robot_message(fake), **signing) == status
    assert dify.requests_to("/chat-messages") == []
    assert fake.calls_to(SESSION) == []


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b"{}", 401),
        ({"timestamp": "soon", "sign": "x"}, b"{}", 403),
        (None, b"not json", 400),
        (None, b"[]", 400),
        (None, b'{"msgId": "m1", "msgtype": "text"}', 400),
    ],
    ids=["unsigned", "bad-timestamp", "not-json", "not-an-object", "no-sender"],
)
async def test_malformed_callbacks_get_4xx(
    dify: FakeDify,
    fake: FakeDingTalk,
    tmp_path: Path,
    headers: dict[str, str] | None,
    body: bytes,
    status: int,
) -> None:
    signed, _ = webhook_request(fake, {})
    async with (
        difybot(dify, tmp_path / "db", **settings(fake)) as running,
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/dingtalk", data=body,
                     headers=signed if headers is None else headers) as response,
    ):  # fmt: skip
        assert response.status == status
    assert dify.requests_to("/chat-messages") == []


@pytest.mark.allow_warnings("session webhook not on DINGTALK_OAPI_BASE")
async def test_a_session_webhook_on_a_foreign_origin_is_never_called(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    payload = robot_message(fake, "外来的地址")
    payload["sessionWebhook"] = f"{fake.foreign_url}/robot/sendBySession?session=stolen"
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, payload) == 200
        await fake.wait_for("/v1.0/robot/oToMessages/batchSend", 2)
    assert fake.foreign_calls == []
    assert fake.calls_to(SESSION) == []
    answer = fake.messages(robot_space(ALICE.staff_id))[-1]
    assert (answer["msgKey"], answer["text"]) == ("sampleMarkdown", "echo: 外来的地址")
    (token_call,) = fake.calls_to("/v1.0/oauth2/accessToken")
    assert token_call.origin == "api"


async def test_an_expired_session_webhook_falls_back_to_the_robots_openapi_send(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    payload = robot_message(fake, "会话过期了", group=GROUP)
    session = next(iter(fake.sessions.sessions.values()))
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        fake.sessions.expire(session)  # expired at DingTalk, though the callback said otherwise
        assert await post(running, fake, payload) == 200
        await fake.wait_for("/v1.0/robot/groupMessages/send", 2)
    posted = [m for m in fake.messages(group_space(GROUP)) if m["via"] == "openapi"]
    assert [m["text"] for m in posted] == ["思考中…", "echo: 会话过期了"]
    (group_call, _) = fake.calls_to("/v1.0/robot/groupMessages/send")
    assert group_call.headers["x-acs-dingtalk-access-token"].startswith("dt-token-")


async def test_the_answer_streams_into_an_ai_card_and_finalizes(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    chunks = ["**广州**", "今天", "晴，", "29 °C。"]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.05))
    config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID)
    async with difybot(dify, tmp_path / "db", **config) as running:
        assert await post(running, fake, robot_message(fake, "天气", group=GROUP)) == 200
        (settled,) = await fake.wait_for("/v1.0/card/instances")
    (card,) = fake.cards.in_space(group_space(GROUP))
    assert card.flow_status == FINISHED
    assert settled.json["cardData"]["cardParamMap"] == {"content": card.data["content"],
                                                       "flowStatus": FINISHED}  # fmt: skip
    assert card.template_id == TEMPLATE_ID
    assert card.data["content"] == "**广州**今天晴，29 °C。"
    assert card.history[-1] == card.data["content"]
    assert all(a in b for a, b in zip(card.history, card.history[1:], strict=False))
    streamed = [c.json for c in fake.calls_to(STREAMING)]
    assert all(s["isFull"] for s in streamed)
    assert [s["isFinalize"] for s in streamed][-1] is True
    assert len({s["guid"] for s in streamed}) == len(streamed)
    assert fake.calls_to(SESSION) == []  # the card is the whole reply


@pytest.mark.allow_warnings("dify error")
async def test_a_failed_answer_marks_the_card_as_failed(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", StreamError(after=1, chunks=["部分"]))
    config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID)
    async with difybot(dify, tmp_path / "db", **config) as running:
        assert await post(running, fake, robot_message(fake, "会失败")) == 200
        (settled,) = await fake.wait_for("/v1.0/card/instances")
    (card,) = fake.cards.in_space(robot_space(ALICE.staff_id))
    assert card.flow_status == FAILED == settled.json["cardData"]["cardParamMap"]["flowStatus"]
    assert card.data["content"].startswith("部分")
    assert fake.calls_to(STREAMING)[-1].json["isError"] is True


@pytest.mark.allow_warnings("AI card not delivered")
async def test_an_unknown_template_falls_back_to_messages(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    config = settings(fake, dingtalk_card_template_id="never-published.schema")
    async with difybot(dify, tmp_path / "db", **config) as running:
        assert await post(running, fake, robot_message(fake, "没有模板")) == 200
        await fake.wait_for(SESSION, 2)
    assert fake.messages(robot_space(ALICE.staff_id))[-1]["text"] == "echo: 没有模板"
    assert fake.cards.cards == {}


# ---- Stream mode --------------------------------------------------------------------------


def stream_settings(fake: FakeDingTalk, **extra: Any) -> dict[str, Any]:
    return settings(fake, dingtalk_event_mode="stream", **extra)


async def test_stream_mode_takes_robot_messages_and_acks_them(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **stream_settings(fake)) as running:
        await fake.gateway.wait_connected()
        message_id = await fake.gateway.bot_message(robot_message(fake, "从 Stream 来"))
        ack = await fake.gateway.acked(message_id)
        await fake.wait_for(SESSION, 2)
        assert await post(running, fake, robot_message(fake)) == 404  # no HTTP route
    assert (ack["code"], ack["headers"]["messageId"]) == (200, message_id)
    assert fake.messages(robot_space(ALICE.staff_id))[-1]["text"] == "echo: 从 Stream 来"
    (opened,) = fake.calls_to("/v1.0/gateway/connections/open")
    assert opened.origin == "api"
    assert opened.json["subscriptions"] == [
        {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}
    ]


async def test_stream_mode_answers_pings_and_reconnects_after_a_disconnect(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **stream_settings(fake)):
        await fake.gateway.wait_connected()
        ping = await fake.gateway.ping()
        pong = await fake.gateway.acked(ping)
        old = await fake.gateway.disconnect()
        await fake.until(lambda: fake.gateway.opened == 2 and old not in fake.gateway.connections)
        await fake.gateway.wait_connected()
        message_id = await fake.gateway.bot_message(robot_message(fake, "重连之后"))
        await fake.gateway.acked(message_id)
        await fake.wait_for(SESSION, 2)
    assert pong["code"] == 200
    assert json.loads(pong["data"])["opaque"] == fake.gateway.sent[ping]["opaque"]
    assert fake.messages(robot_space(ALICE.staff_id))[-1]["text"] == "echo: 重连之后"


async def test_stream_mode_redelivery_and_malformed_frames(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **stream_settings(fake)):
        await fake.gateway.wait_connected()
        bad = await fake.gateway.bot_message({"msgtype": "text"})
        refused = await fake.gateway.acked(bad)
        message_id = await fake.gateway.bot_message(robot_message(fake, "一次"))
        await fake.gateway.acked(message_id)
        fake.gateway.acks.pop(message_id)
        await fake.gateway.redeliver(message_id)
        await fake.gateway.acked(message_id)
        await fake.wait_for(SESSION, 2)
        await dify.wait_streams(0)
    assert refused["code"] == 400
    assert len(dify.requests_to("/chat-messages")) == 1


# ---- files in -----------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 100


async def test_a_picture_reaches_dify_through_the_robot_file_api(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, picture(fake, PNG)) == 200
        await fake.wait_for(SESSION, 2)
    ((file_id, upload),) = dify.uploads.items()
    assert (upload.data, upload.mime_type) == (PNG, "image/png")
    chat = dify.requests_to("/chat-messages")[0].json
    assert chat["files"] == [
        {"type": "image", "transfer_method": "local_file", "upload_file_id": file_id}
    ]
    (asked,) = fake.calls_to("/v1.0/robot/messageFiles/download")
    assert asked.json["robotCode"] == fake.client_id
    (fetched,) = [c for c in fake.calls if c.origin == "files"]
    assert "x-acs-dingtalk-access-token" not in fetched.headers  # no credential to the file host


async def test_a_file_keeps_its_name(dify: FakeDify, fake: FakeDingTalk, tmp_path: Path) -> None:
    data = b"%PDF-1.4\n" + b"0" * 200
    payload = file_message(fake, data, "季度报告.pdf", "application/pdf")
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, payload) == 200
        await fake.wait_for(SESSION, 2)
    ((_, upload),) = dify.uploads.items()
    assert (upload.filename, upload.data) == ("季度报告.pdf", data)


# ---- what an answer offers next ---------------------------------------------------------


async def test_suggested_questions_come_numbered_and_a_number_asks_one(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        await post(running, fake, robot_message(fake, "第一问", group=GROUP, sender=ALICE))
        await fake.wait_for(SESSION, 3)
        await post(running, fake, robot_message(fake, "2", group=GROUP, sender=BOB))
        await fake.wait_for(SESSION, 6)
    shown = fake.messages(group_space(GROUP))
    assert shown[1]["text"] == "echo: 第一问"
    offer = shown[2]
    assert offer["text"].splitlines() == [
        "你还可以问（回复序号即可）：",
        *(f"{n}. {q}" for n, q in enumerate(SUGGESTIONS, 1)),
    ]
    second = dify.requests_to("/chat-messages")[1].json
    assert second["query"] == SUGGESTIONS[1]  # any member of the group may pick
    assert second["conversation_id"]


async def test_a_thumb_rates_the_last_answer_when_feedback_is_on(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **settings(fake, dingtalk_feedback=True)) as running:
        await post(running, fake, robot_message(fake, "评价我"))
        await fake.wait_for(SESSION, 3)
        await post(running, fake, robot_message(fake, "👍"))
        await fake.wait_for(SESSION, 4)
    *_, offer, thanks = fake.messages(robot_space(ALICE.staff_id))
    assert offer["text"] == "这个回答有帮助吗？回复 👍 或 👎。"
    assert thanks["text"] == "感谢你的反馈！"
    (rated,) = [r for r in dify.requests if r.path.endswith("/feedbacks")]
    assert rated.json == {"rating": "like", "user": f"dingtalk:{fake.corp_id}:{ALICE.staff_id}"}
    assert len(dify.requests_to("/chat-messages")) == 1


# ---- limits ---------------------------------------------------------------------------------


async def test_a_qps_refusal_is_waited_out_and_the_card_still_finishes(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    fake.throttle_next(STREAMING)
    config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID)
    async with difybot(dify, tmp_path / "db", **config) as running:
        assert await post(running, fake, robot_message(fake, "限流")) == 200
        await fake.wait_for("/v1.0/card/instances")
    (card,) = fake.cards.in_space(robot_space(ALICE.staff_id))
    assert (card.flow_status, card.data["content"]) == (FINISHED, "echo: 限流")
    statuses = [c.status for c in fake.calls_to(STREAMING)]
    assert statuses[0] == 403 and statuses[1:] == [200] * (len(statuses) - 1)


async def test_a_long_answer_is_split_under_the_session_webhooks_limit(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    paragraph = "这是一个很长的段落，用来测试拆分。" * 40  # 680 characters, 2040 bytes
    dify.enqueue("/chat-messages", Answer(chunks=[paragraph + "\n\n"] * 15, delay=0))
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, robot_message(fake, "长")) == 200
        await fake.wait_for(SESSION, 3)
    sent = fake.calls_to(SESSION)
    assert all(c.ok for c in sent) and all(len(c.body) <= 20_000 for c in sent)
    parts = [m["text"] for m in fake.messages(robot_space(ALICE.staff_id))[1:]]
    assert len(parts) == 2
    assert "\n\n".join(parts) == "\n\n".join([paragraph] * 15)


async def test_replicas_share_one_access_token(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID)
    async with (
        difybot(dify, tmp_path / "db", **config) as a,
        difybot(dify, tmp_path / "db", **config) as b,
    ):
        await post(a, fake, robot_message(fake, "A"))
        await fake.wait_for("/v1.0/card/instances", 1)
        await post(b, fake, robot_message(fake, "B", sender=BOB))
        await fake.wait_for("/v1.0/card/instances", 2)
    assert len(fake.calls_to("/v1.0/oauth2/accessToken")) == 1
    tokens = {c.headers["x-acs-dingtalk-access-token"] for c in fake.calls_to(STREAMING)}
    assert len(tokens) == 1


async def test_card_buttons_ask_a_suggested_question_and_rate_the_answer(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    config = stream_settings(
        fake, dingtalk_card_template_id=TEMPLATE_ID, dingtalk_card_buttons=True
    )
    async with difybot(dify, tmp_path / "db", **config):
        await fake.gateway.wait_connected()
        await fake.gateway.bot_message(robot_message(fake, "第一问", group=GROUP))
        await fake.wait_for("/v1.0/card/instances", 2)  # settled, then the buttons' data
        (card,) = fake.cards.in_space(group_space(GROUP))
        assert json.loads(card.data["suggestions"]) == SUGGESTIONS
        answered = card.data["message_id"]
        ask = card_action(fake, card, user=BOB, action="ask",
                          params={"question": SUGGESTIONS[0]})  # fmt: skip
        assert (await fake.gateway.acked(await fake.gateway.card_callback(ask)))["code"] == 200
        await fake.wait_for("/v1.0/card/instances", 4)  # the second answer's card settled
        like = card_action(fake, card, user=BOB, action="feedback_like",
                           params={"message_id": answered})  # fmt: skip
        assert (await fake.gateway.acked(await fake.gateway.card_callback(like)))["code"] == 200
        await fake.wait_for("/v1.0/robot/groupMessages/send")  # the thanks
    first, second = dify.requests_to("/chat-messages")
    assert second.json["query"] == SUGGESTIONS[0]
    assert second.json["conversation_id"] and second.json["user"] == first.json["user"]
    (rated,) = [r for r in dify.requests if r.path.endswith("/feedbacks")]
    assert rated.path == f"/messages/{answered}/feedbacks"
    assert rated.json == {"rating": "like", "user": first.json["user"]}
    assert fake.calls_to(SESSION) == []  # no numbered message: the card holds the offer
    subscribed = fake.calls_to("/v1.0/gateway/connections/open")[0].json["subscriptions"]
    assert {"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"} in subscribed


async def test_a_session_webhook_over_its_rate_hands_over_to_the_openapi_send(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    fake.fail_session_next(410100, "send too fast, exceed 20 times per minute")
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, robot_message(fake, "太快了")) == 200
        await fake.wait_for(SESSION, 2)
    shown = [(m["via"], m["text"]) for m in fake.messages(robot_space(ALICE.staff_id))]
    assert shown == [("openapi", "思考中…"), ("session", "echo: 太快了")]
    assert len(fake.calls_to(SESSION)) == 2  # the refused one was not tried again


@pytest.mark.allow_warnings("AI card not delivered")
async def test_a_hanging_card_api_times_out_and_the_answer_comes_as_messages(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    fake.hang_next("/v1.0/card/instances/createAndDeliver")
    config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID, dingtalk_request_timeout=0.3)
    async with difybot(dify, tmp_path / "db", **config) as running:
        assert await post(running, fake, robot_message(fake, "卡住了")) == 200
        await fake.wait_for(SESSION, 2)
    assert [m["text"] for m in fake.messages(robot_space(ALICE.staff_id))] == [
        "思考中…",
        "echo: 卡住了",
    ]


async def test_a_bare_mention_gets_the_opening_statement_and_an_unreadable_kind_a_notice(
    dify: FakeDify, fake: FakeDingTalk, tmp_path: Path
) -> None:
    dify.parameters["opening_statement"] = "你好，我是产品助手。"
    untranscribed = robot_message(fake, group=GROUP, msgtype="audio", content={"duration": 3})
    async with difybot(dify, tmp_path / "db", **settings(fake)) as running:
        assert await post(running, fake, robot_message(fake, " ", group=GROUP)) == 200
        await fake.wait_for(SESSION, 1)
        assert await post(running, fake, untranscribed) == 200
        await fake.wait_for(SESSION, 2)
    assert [m["text"] for m in fake.messages(group_space(GROUP))] == [
        "你好，我是产品助手。",
        "我能读文字、图片和文件，暂时读不了这类消息。",
    ]
    assert dify.requests_to("/chat-messages") == []


async def test_a_tool_call_shows_in_the_card_until_the_answer_ends(
    fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with FakeDify(mode="agent-chat") as dify:
        answer = Answer(chunks=["结果"], delay=0.3, agent_thoughts=[{"tool": "web_search"}])
        dify.enqueue("/chat-messages", answer)
        config = settings(fake, dingtalk_card_template_id=TEMPLATE_ID)
        async with difybot(dify, tmp_path / "db", **config) as running:
            assert await post(running, fake, robot_message(fake, "查一下")) == 200
            await fake.wait_for("/v1.0/card/instances")
    streamed = [c.json["content"] for c in fake.calls_to(STREAMING)]
    assert "*🔧 web_search…*" in streamed[:-1]  # a status line while the tool ran
    assert streamed[-1] == "结果"  # gone from the final answer

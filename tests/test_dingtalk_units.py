"""DingTalk's pure parts: callbacks normalized (table-tested over captured payloads), Markdown
rendering, the callback signature, the pacer's handling of DingTalk's QPS refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from dingtalk_stream import chatbot
from pydantic import SecretStr

from adapters.dingtalk.adapter import sign
from adapters.dingtalk.api import DingTalkAPIError, DingTalkPacer, to_result
from adapters.dingtalk.check import check_dingtalk
from adapters.dingtalk.inbound import to_card_action, to_incoming, to_robot_message, to_where
from adapters.dingtalk.markdown import to_dingtalk_markdown
from adapters.dingtalk.offers import Choice, to_card_choice, to_choice
from adapters.dingtalk.reply import Chat, title_of
from adapters.dingtalk.settings import DingTalkSettings
from bot.errors import CallbackRejected
from bot.models import Scope
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.dingtalk_inbound import sign as dingtalk_sign

PAYLOADS = Path(__file__).parent / "payloads" / "dingtalk"
CORP = "ding9f50b15b7a5e0c3b35c2f4657eb6378f"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    ("name", "text", "scope", "scope_id", "user", "files"),
    [
        ("callback_text_single", None, Scope.USER, "manager4821", "manager4821", []),
        ("callback_text_group_at", "@王小明 这个需求怎么评估？", Scope.CHANNEL,
         "cidGroupProduct0001==", "cidGroupProduct0001==", []),
        ("callback_text_group_only_mention", "", Scope.CHANNEL, "cidGroupProduct0001==",
         "cidGroupProduct0001==", []),
        ("callback_text_external_sender", "hello from a partner company", Scope.USER,
         "$:LWCP_v1:$q9xZp2KfT7sUa0VbN3mD4w==", "$:LWCP_v1:$q9xZp2KfT7sUa0VbN3mD4w==", []),
        ("callback_richtext", "看看这张图\n哪里有问题？", Scope.USER, "manager4821", "manager4821",
         [("picture.jpg", "image/jpeg")]),
        ("callback_picture", "", Scope.USER, "manager4821", "manager4821",
         [("picture.jpg", "image/jpeg")]),
        ("callback_file", "", Scope.USER, "manager4821", "manager4821",
         [("季度报告.pdf", "application/pdf")]),
        ("callback_video", "", Scope.USER, "manager4821", "manager4821",
         [("video.mp4", "video/mp4")]),
        ("callback_audio", "明天上午的会议改到几点了", Scope.USER, "manager4821",
         "manager4821", []),
    ],
)  # fmt: skip
def test_callbacks_are_normalized(
    name: str,
    text: str | None,
    scope: Scope,
    scope_id: str,
    user: str,
    files: list[tuple[str, str]],
) -> None:
    raw = payload(name)
    robot = to_robot_message(raw)
    message = to_incoming(robot, per_user=False, locale="zh")
    if text is None:
        text = raw["text"]["content"].strip()
    assert message.text == text
    assert (message.key.scope, message.key.scope_id, message.user_id) == (scope, scope_id, user)
    assert message.message_id == raw["msgId"] and message.workspace == CORP
    assert [(a.name, a.mime_type) for a in message.attachments] == files
    assert all(a.platform_id for a in message.attachments)
    # The official SDK reads the same callback the same way.
    sdk = chatbot.ChatbotMessage.from_dict(raw)
    assert robot.msg_id == sdk.message_id and robot.group == (sdk.conversation_type == "2")
    assert to_where(robot)["session_webhook"] == sdk.session_webhook


def test_a_group_can_be_one_conversation_per_member() -> None:
    robot = to_robot_message(payload("callback_text_group_at"))
    shared = to_incoming(robot, per_user=False, locale="zh")
    own = to_incoming(robot, per_user=True, locale="zh")
    assert shared.author == own.author == "staff0917"
    assert shared.channel_id == own.channel_id == "cidGroupProduct0001=="
    assert (own.key.scope, own.key.scope_id) == (Scope.USER, "staff0917@cidGroupProduct0001==")
    assert own.user_id == "staff0917"


@pytest.mark.parametrize(
    "raw",
    [None, [], {}, {"msgId": "m", "msgtype": "text"}, {"msgtype": "text", "senderId": "x"}],
)
def test_malformed_callbacks_are_refused(raw: Any) -> None:
    with pytest.raises(CallbackRejected) as refused:
        to_robot_message(raw)
    assert refused.value.status == 400


def test_card_spaces_follow_the_chat() -> None:
    group = Chat.of(to_where(to_robot_message(payload("callback_text_group_at"))))
    single = Chat.of(to_where(to_robot_message(payload("callback_text_single"))))
    outsider = Chat.of(to_where(to_robot_message(payload("callback_text_external_sender"))))
    assert group.open_space == "dtv1.card//IM_GROUP.cidGroupProduct0001=="
    assert single.open_space == "dtv1.card//IM_ROBOT.manager4821"
    assert outsider.open_space == ""  # no staff id: no card, messages instead


def test_the_signature_matches_dingtalks() -> None:
    secret, stamp = "SECabc123", "1735689600000"
    assert sign(secret, stamp) == dingtalk_sign(secret, stamp)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold** and *it*", "**bold** and *it*"),
        ("line one\nline two", "line one  \nline two"),
        ("# Title\n\ntext", "# Title\n\ntext"),
        ("- a\n- b\n  - c", "- a\n- b\n  - c"),
        ("1. one\n2. two", "1. one\n2. two"),
        ("~~gone~~ kept", "gone kept"),
        ("> quoted", "> quoted"),
        ("[link](https://x.example/a) ![pic](https://x.example/p.png)",
         "[link](https://x.example/a) ![pic](https://x.example/p.png)"),
        ("```python\nprint(1)\n```", "```python\nprint(1)\n```"),
        ("| 城市 | 温度 |\n|---|---|\n| 广州 | 29 |\n| 北京 | 3 |",
         "- 城市: 广州; 温度: 29\n- 城市: 北京; 温度: 3"),
        ("`code`", "`code`"),
    ],
)  # fmt: skip
def test_markdown_is_rendered_for_dingtalk(markdown: str, expected: str) -> None:
    assert to_dingtalk_markdown(markdown) == expected


def test_titles_are_the_answers_first_words() -> None:
    assert title_of("# 广州天气\n\n晴", "回答") == "广州天气"
    assert title_of("", "回答") == "回答"
    assert title_of("x" * 40, "回答") == "x" * 24 + "…"


def _response(status: int, body: dict[str, Any]) -> httpx.Response:
    request = httpx.Request("POST", "https://api.dingtalk.com/v1.0/robot/groupMessages/send")
    return httpx.Response(status, json=body, request=request)


def test_both_error_styles_become_one_error() -> None:
    with pytest.raises(DingTalkAPIError) as openapi:
        to_result(_response(403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}))
    assert openapi.value.throttled and openapi.value.status == 403
    with pytest.raises(DingTalkAPIError) as oapi:
        to_result(_response(200, {"errcode": 300001, "errmsg": "session 不存在"}))
    assert oapi.value.session_gone
    assert to_result(_response(200, {"errcode": 0, "errmsg": "ok"})) == {
        "errcode": 0,
        "errmsg": "ok",
    }


async def test_the_pacer_waits_out_a_qps_refusal_and_tries_again() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = DingTalkPacer(clock=lambda: now[0], sleep=sleep)
    answers = iter([DingTalkAPIError("qps", code="Forbidden.AccessDenied.QpsLimitForApi"), "ok"])

    async def send() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await pacer.call("/v1.0/card/streaming", send) == "ok"
    assert slept == [1.0]  # DingTalk's window is one second


async def test_the_pacer_gives_up_and_passes_other_errors_at_once() -> None:
    calls = 0

    async def send() -> str:
        nonlocal calls
        calls += 1
        raise DingTalkAPIError("bad", code="param.invalid")

    pacer = DingTalkPacer()
    with pytest.raises(DingTalkAPIError):
        await pacer.call("x", send)
    assert calls == 1


def test_card_clicks_are_decoded_into_typed_choices() -> None:
    action = to_card_action(payload("callback_card_action"))
    assert (action.action, action.user_id, action.group) == ("feedback_like", "manager4821", True)
    offer = {"message_id": action.params["message_id"], "app": "default", "dify_user": "u"}
    assert to_card_choice(action.action, action.params, offer) == Choice(
        "rate", "like", "default", action.params["message_id"], "u"
    )
    assert to_card_choice(action.action, action.params, None) is None  # the offer is gone
    assert to_card_choice("ask", {"question": "再说说？"}, None) == Choice("ask", "再说说？")
    assert to_card_choice("unknown", {}, offer) is None
    with pytest.raises(CallbackRejected):
        to_card_action({"userId": "u", "spaceId": "s", "content": "not json"})


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("2", Choice("ask", "b")),
        (" 1。", Choice("ask", "a")),
        ("3", None),
        ("👎", Choice("rate", "dislike", "default", "m1", "u")),
        ("two", None),
    ],
)
def test_numbered_replies_pick_from_the_offer(text: str, choice: Choice | None) -> None:
    offer = {"questions": ["a", "b"], "feedback": True, "message_id": "m1", "dify_user": "u"}
    assert to_choice(offer, text) == choice


def test_form_buttons_and_numbers_are_decoded_into_form_choices() -> None:
    params = {"ref": "r1", "action": "approve"}
    assert to_card_choice("form", params, None) == Choice("form", "approve", ref="r1")
    assert to_card_choice("form", {"ref": "r1"}, None) is None  # no action: not understood
    assert to_card_choice("form", {"action": "approve"}, None) is None
    offer = {"form": {"ref": "r1", "actions": ["approve", "reject"]}}
    assert to_choice(offer, "2") == Choice("form", "reject", ref="r1")
    assert to_choice(offer, " 1。") == Choice("form", "approve", ref="r1")
    assert to_choice(offer, "3") is None  # out of range: goes to Dify as a question
    assert to_choice(offer, "approve") is None


async def test_check_gets_a_token_with_the_credentials() -> None:
    async with FakeDingTalk() as fake:
        good = DingTalkSettings.model_validate(
            {"dingtalk_client_id": fake.client_id, "dingtalk_client_secret": fake.client_secret,
             "dingtalk_api_base": fake.api_url}
        )  # fmt: skip
        bad = good.model_copy(update={"dingtalk_client_secret": SecretStr("wrong")})
        (ok,) = await check_dingtalk(good)
        (refused,) = await check_dingtalk(bad)
    assert ok.ok and "Stream mode" in ok.detail
    assert not refused.ok and "invalidClientIdOrSecret" in refused.detail
    assert "DINGTALK_CLIENT_SECRET" in refused.fix and "wrong" not in refused.detail


def test_a_429_with_retry_after_is_throttled_for_that_long() -> None:
    request = httpx.Request("PUT", "https://api.dingtalk.com/v1.0/card/streaming")
    response = httpx.Response(429, json={"code": "TooMany"}, headers={"Retry-After": "3"},
                              request=request)  # fmt: skip
    with pytest.raises(DingTalkAPIError) as refused:
        to_result(response)
    assert refused.value.throttled and refused.value.retry_after == 3.0

"""Human Input forms on the WeCom app, end to end (fake WeCom, fake Dify 1.14.1 that pauses):
a ``button_interaction`` template card whose click (``template_card_event``) answers the form,
the card greyed out with the choice; fields asked as follow-up messages; a late click told."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import BOT_AES_KEY, Running, difybot, wecom_settings
from tests.fakes.wecom_push import AIBotServer, WeComServer
from tests.test_wecom_app import SEND, wecom

UPDATE = "/cgi-bin/message/update_template_card"
NO_FIELDS = HumanInput(inputs=(), after=("after form: action=", "{{#human.__action_id#}}"))


def card_click(server: WeComServer, user: str, card: dict[str, Any], key: str) -> dict[str, Any]:
    """The decrypted ``template_card_event`` WeCom pushes when a member clicks a button."""
    return {"ToUserName": server.corp_id, "FromUserName": user, "CreateTime": int(time.time()),
            "MsgType": "event", "Event": "template_card_event", "EventKey": key,
            "TaskId": card["task_id"], "CardType": "button_interaction",
            "ResponseCode": f"rc-{key}", "AgentID": int(server.agent_id)}  # fmt: skip


def sent(api: FakeWeChatAPI, kind: str) -> list[dict[str, Any]]:
    return [c.json for c in api.calls_to(SEND) if c.json["msgtype"] == kind]


async def test_a_card_click_answers_and_the_run_goes_on(api: FakeWeChatAPI, tmp_path: Path) -> None:
    flow = HumanFlow(steps=(NO_FIELDS,))
    async with (
        FakeDify(flow=flow, version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **wecom_settings(api)) as running,
    ):
        server = wecom(running, api)
        await server.push(server.message("zhangsan", 1, "ship it?"))
        await api.wait_for(SEND, 2)
        (text,), (card,) = sent(api, "markdown"), sent(api, "template_card")
        assert text["markdown"]["content"].startswith("before form: ship it?")
        card = card["template_card"]
        assert card["card_type"] == "button_interaction" and card["main_title"]["title"] == "Review"
        assert [(b["text"], b["key"], b["style"]) for b in card["button_list"]] == [
            ("Approve", "approve", 1),
            ("Reject", "reject", 2),
        ]
        assert await server.push(card_click(server, "zhangsan", card, "reject")) == (200, "")
        (update,) = await api.wait_for(UPDATE)
        assert update.json["response_code"] == "rc-reject"
        assert update.json["button"] == {"replace_name": "Reject"}
        await api.wait_for(SEND, 3)
        assert sent(api, "markdown")[-1]["markdown"]["content"] == "after form: action=reject"
        await server.push(card_click(server, "zhangsan", card, "approve"))  # a late second click
        late = (await api.wait_for(UPDATE, 2))[-1]
        assert late.json["button"]["replace_name"] == "此表单已有人回答。"
    submits = [r.json for r in dify.requests if r.path.startswith("/form/")]
    assert submits == [{"inputs": {}, "action": "reject", "user": f"wecom:{api.corp_id}:zhangsan"}]


async def test_fields_are_asked_as_messages_after_the_click(
    api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **wecom_settings(api)) as running,
    ):
        server = wecom(running, api)
        await server.push(server.message("lisi", 1, "ship it?"))
        await api.wait_for(SEND, 2)
        card = sent(api, "template_card")[0]["template_card"]
        await server.push(card_click(server, "lisi", card, "approve"))
        (update,) = await api.wait_for(UPDATE)
        assert update.json["button"] == {"replace_name": "Approve"}
        await api.wait_for(SEND, 3)
        assert sent(api, "markdown")[-1]["markdown"]["content"] == "请回复“note”："
        await server.push(server.message("lisi", 2, "looks good"))
        await api.wait_for(SEND, 4)
        resumed = sent(api, "markdown")[-1]["markdown"]["content"]
    assert resumed == "after form: action=approve note=looks good"
    (submit,) = [r.json for r in dify.requests if r.path.startswith("/form/")]
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "approve"
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_the_ai_bot_ends_its_stream_with_a_card_and_a_click_answers(
    api: FakeWeChatAPI, tmp_path: Path
) -> None:
    flow = HumanFlow(steps=(NO_FIELDS,))
    async with (
        FakeDify(flow=flow, version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **wecom_settings(api)) as running,
    ):
        server = ai_bot(running)
        first = await server.post(server.message("m1", "ship it?"))
        assert first is not None
        last = first
        async with asyncio.timeout(10):
            while not last["stream"]["finish"]:
                await asyncio.sleep(0.05)  # WeCom's polling interval, not a test wait
                polled = await server.post(server.refresh(first["stream"]["id"]))
                assert polled is not None
                last = polled
        assert last["msgtype"] == "stream_with_template_card"
        assert last["stream"]["content"].startswith("before form: ship it?")
        card = last["template_card"]
        url = f"{api.url}/cgi-bin/aibot/response?response_code=click-1"
        update = await server.post(bot_click(server, card, "reject", response_url=url))
        assert update is not None and update["response_type"] == "update_template_card"
        assert update["template_card"]["replace_text"] == "Reject"
        assert update["template_card"]["task_id"] == card["task_id"]
        (posted,) = await api.wait_for("/cgi-bin/aibot/response")
    assert posted.json == {
        "msgtype": "markdown",
        "markdown": {"content": "after form: action=reject"},
    }
    (submit,) = [r.json for r in dify.requests if r.path.startswith("/form/")]
    assert submit["action"] == "reject" and submit["user"].endswith(":zhangsan")


def ai_bot(running: Running) -> AIBotServer:
    return AIBotServer(f"{running.url}/wecom/bot", token="bot-token", aes_key=BOT_AES_KEY)


def bot_click(
    server: AIBotServer, card: dict[str, Any], key: str, *, response_url: str
) -> dict[str, Any]:
    """The decrypted ``template_card_event`` callback of the AI bot (JSON)."""
    clicked = {"card_type": "button_interaction", "event_key": key, "task_id": card["task_id"]}
    event = {"eventtype": "template_card_event", "template_card_event": clicked}
    return {"msgid": f"click-{key}", "create_time": int(time.time()), "aibotid": server.bot_id,
            "chattype": "single", "from": {"corpid": "wpcorp", "userid": "zhangsan"},
            "response_url": response_url, "msgtype": "event", "event": event}  # fmt: skip

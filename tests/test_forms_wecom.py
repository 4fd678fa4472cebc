"""Human Input forms on the WeCom app, end to end (fake WeCom, fake Dify 1.14.1 that pauses):
a ``button_interaction`` template card whose click (``template_card_event``) answers the form,
the card greyed out with the choice; fields asked as follow-up messages; a late click told."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import difybot, wecom_settings
from tests.fakes.wecom_push import WeComServer
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

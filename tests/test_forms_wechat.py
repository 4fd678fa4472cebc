"""Human Input forms on the Official Account (no buttons: the core's text fallback), end to end
against fake WeChat and a fake Dify 1.14.1 that pauses: the form arrives as the passive reply
with numbered choices, the next messages answer it, the rest of the run is the next reply."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import difybot, wechat_settings
from tests.test_wechat_official import USER, wechat


async def test_the_form_is_answered_by_numbered_replies(api: FakeWeChatAPI, tmp_path: Path) -> None:
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **wechat_settings(api)) as running,
    ):
        server = wechat(running, api)
        paused = await server.push(server.message(USER, 1, "ship it?"))
        field = await server.push(server.message(USER, 2, "looks good"))
        wrong = await server.push(server.message(USER, 3, "9"))
        resumed = await server.push(server.message(USER, 4, "2"))
        (submit,) = [r for r in dify.requests if r.path.startswith("/form/")]
    assert paused.content is not None and field.content is not None
    assert paused.content.startswith("before form: ship it?\n\nPlease review: ship it?")
    assert paused.content.endswith("Note:\n\n请回复“note”：")  # WeChat speaks Chinese by default
    assert field.content == "请回复选项的编号：\n\n1. Approve\n2. Reject"  # Markdown list
    assert wrong.content == field.content  # no such choice: asked again, nothing sent
    assert resumed.content == "after form: action=reject note=looks good"
    assert submit.json == {
        "inputs": {"note": "looks good"},
        "action": "reject",
        "user": f"wechat:{api.app_id}:{USER}",
    }
    assert len(dify.requests_to("/chat-messages")) == 1  # the answers never went to Dify

"""Feishu does not render forms natively (yet): it gets the core's text fallback with no work of
its own — the form as text with numbered choices, the next messages answer it. (Telegram's native
buttons: tests/test_telegram_forms.py.)"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import FeishuCallbacks
from tests.fakes.wechat_app import difybot
from tests.test_feishu_e2e import answered, events, feishu_settings, p2p

RESUMED = "after form: action=reject note=looks good"


def check_form_flow(texts: list[str], dify: FakeDify) -> None:
    shown = "\n".join(texts)
    assert "before form: ship it?" in shown and "Please review: ship it?" in shown
    assert "Please reply with “note”" in shown
    assert "1. Approve" in shown and "2. Reject" in shown
    assert RESUMED in texts[-1]
    (submit,) = [r.json for r in dify.requests if r.path.startswith("/form/")]
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "reject"
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_feishu_answers_a_form_by_numbered_replies(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        callbacks = FeishuCallbacks()
        for text in ("ship it?", "looks good", "2"):
            delivery = await callbacks.post(
                events(running), callbacks.message_received(p2p(feishu, text))
            )
            assert delivery.status == 200
            await answered(running)
            await running.core.inbox.idle()
        texts = [feishu.text(m.message_id) for m in feishu.bot_messages()]
    check_form_flow(texts, dify)

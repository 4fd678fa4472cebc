"""Telegram does not render forms natively (yet): it gets the core's text fallback with no work of
its own — the form as text with numbered choices, the next messages answer it. (Feishu's native
forms: ``tests/test_forms_feishu.py``.)"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wechat_app import difybot
from tests.test_telegram_e2e import settings as telegram_settings

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


async def test_telegram_answers_a_form_by_numbered_replies(tmp_path: Path) -> None:
    async with (
        FakeTelegram() as tg,
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **telegram_settings(tg)) as running,
    ):
        chat = tg.inbound.private_chat()

        def shown() -> str:
            return "\n".join(m.text for m in tg.state.sent_by_bot(chat.id))

        for text, expect in (("ship it?", "“note”"), ("looks good", "2. Reject"), ("2", RESUMED)):
            tg.inbound.text(chat, text)
            await tg.until(lambda expect=expect: expect in shown(), 10)  # type: ignore[misc]
            await running.core.inbox.idle()
        texts = [m.text for m in tg.state.sent_by_bot(chat.id)]
    check_form_flow(texts, dify)

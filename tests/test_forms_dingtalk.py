"""A platform that does not implement forms (DingTalk) gets the core's text fallback with no
work of its own: the form as text with numbered choices, its next messages answer the form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.dingtalk import FakeDingTalk, robot_space
from tests.fakes.dingtalk_inbound import ALICE, robot_message
from tests.fakes.wechat_app import difybot
from tests.test_dingtalk import SESSION, post, settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


async def test_dingtalk_answers_a_form_by_numbered_replies(
    fake: FakeDingTalk, tmp_path: Path
) -> None:
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **settings(fake)) as running,
    ):
        for count, text in enumerate(("ship it?", "looks good", "1"), 1):
            assert await post(running, fake, robot_message(fake, text)) == 200
            await fake.wait_for(SESSION, 2 * count)
        (submit,) = [r.json for r in dify.requests if r.path.startswith("/form/")]
    texts = [m["text"] for m in fake.messages(robot_space(ALICE.staff_id))]
    shown = "\n".join(texts)
    assert "before form: ship it?" in shown and "Please review: ship it?" in shown
    assert "1. Approve" in shown and "2. Reject" in shown
    assert texts[-1].endswith("after form: action=approve note=looks good")
    assert submit == {
        "inputs": {"note": "looks good"},
        "action": "approve",
        "user": f"dingtalk:{fake.corp_id}:{ALICE.staff_id}",
    }
    assert len(dify.requests_to("/chat-messages")) == 1

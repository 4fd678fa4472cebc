"""LINE does not implement forms: it gets the core's text fallback with no work of its own (the
form as text with numbered choices; the next messages answer it, each by its own reply)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.line import FakeLine
from tests.fakes.wechat_app import difybot
from tests.test_line import deliver, line_settings


@pytest.fixture
async def line() -> AsyncIterator[FakeLine]:
    async with FakeLine() as fake:
        yield fake


async def test_line_answers_a_form_by_numbered_replies(line: FakeLine, tmp_path: Path) -> None:
    user = line.events.user()
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **line_settings(line)) as running,
    ):
        for text in ("ship it?", "looks good", "2"):
            assert await deliver(running, line, line.events.text(text, user=user)) == 200
        (submit,) = [r.json for r in dify.requests if r.path.startswith("/form/")]
    texts = line.texts(user)
    assert texts[0].startswith("before form: ship it?") and "Please review: ship it?" in texts[0]
    assert texts[0].endswith("Please reply with “note”:")
    assert "1. Approve" in texts[1] and "2. Reject" in texts[1]
    assert texts[-1] == "after form: action=reject note=looks good"
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "reject"
    assert len(dify.requests_to("/chat-messages")) == 1

"""Dify Human Input forms on LINE, end to end (fake LINE, fake Dify 1.14.1 that pauses): one
postback quick reply per action on the form's message; a tap answers the form and the run goes
on in a new message by the tap's own reply token (LINE cannot edit); a second tap, an expired
form, a member who may not answer, a form with a field (asked as a message), a redelivered tap."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.dify_behaviours import HttpError
from tests.fakes.line import FakeLine
from tests.fakes.wechat_app import Running, difybot
from tests.test_line import PUSH, REPLY, deliver, line_settings

NO_FIELDS = HumanInput(inputs=(), after=("after form: action=", "{{#human.__action_id#}}"))


@pytest.fixture
async def line() -> AsyncIterator[FakeLine]:
    async with FakeLine() as fake:
        yield fake


def flow(node: HumanInput = NO_FIELDS, **extra: Any) -> FakeDify:
    return FakeDify(flow=HumanFlow(steps=(node,)), version="1.14.1", **extra)


def buttons(line: FakeLine, chat: str) -> list[dict[str, Any]]:
    """The postback actions of the chat's quick reply (LINE shows the last message's only)."""
    items = line.chats[chat][-1].message.get("quickReply", {}).get("items", [])
    return [item["action"] for item in items]


async def paused(running: Running, line: FakeLine, user: str, chat: str | None = None) -> None:
    """Ask (in a group, with a mention); the form's message is the chat's last one."""
    text = "@Dify Bot ship it?" if chat else "ship it?"
    mentions = [line.events.mention(text)] if chat else []
    event = line.events.text(text, user=user, chat=chat, mentions=mentions)
    await deliver(running, line, event)
    await line.until(lambda: bool(buttons(line, chat or user)), what="the form's quick reply")


def tap(line: FakeLine, chat: str, index: int, *, user: str, group: bool = False) -> dict[str, Any]:
    data = buttons(line, chat)[index]["data"]
    return line.events.postback(data, user=user, chat=chat if group else None)


def duplicates(running: Running) -> float | None:
    registry = running.core.inbox.metrics.registry
    return registry.get_sample_value("difybot_duplicate_deliveries_total", {"platform": "line"})


def submits(dify: FakeDify) -> list[Any]:
    return [r.json for r in dify.requests if r.method == "POST" and r.path.startswith("/form/")]


async def test_a_tap_submits_and_the_run_goes_on_by_the_taps_reply_token(
    line: FakeLine, tmp_path: Path
) -> None:
    user = line.events.user()
    async with flow() as dify, difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await paused(running, line, user)
        (shown,) = line.texts(user)
        assert shown.startswith("before form: ship it?") and "Please review: ship it?" in shown
        approve, reject = buttons(line, user)
        assert (approve["type"], approve["label"], approve["displayText"]) == (
            "postback", "Approve", "Approve",
        )  # fmt: skip
        assert reject["label"] == "Reject" and reject["data"].startswith("dify:form:")
        assert await deliver(running, line, tap(line, user, 1, user=user)) == 200
        await line.until(lambda: len(line.texts(user)) == 2, what="the run's continuation")
    assert line.texts(user)[1] == "after form: action=reject"  # what is new, not the form again
    assert [s.via for s in line.chats[user]] == ["reply", "reply"]
    assert line.calls_to(PUSH) == []  # the tap's reply token carried it: nothing billed
    # The form's buttons went with the tap; the continuation carries the answer's own.
    assert [b["label"] for b in buttons(line, user)] == ["👍 Helpful", "👎 Not helpful"]
    assert submits(dify) == [{"inputs": {}, "action": "reject",
                              "user": f"line:{line.bot_user_id}:{user}"}]  # fmt: skip
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_a_second_tap_is_told_the_form_was_answered(line: FakeLine, tmp_path: Path) -> None:
    user = line.events.user()
    async with flow() as dify, difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await paused(running, line, user)
        first, second = tap(line, user, 0, user=user), tap(line, user, 1, user=user)
        await deliver(running, line, first)
        await line.until(lambda: len(line.texts(user)) == 2, what="the run's continuation")
        await deliver(running, line, second)  # an old quick reply, tapped late
        await line.until(lambda: len(line.texts(user)) == 3, what="the notice")
    assert line.texts(user)[1:] == ["after form: action=approve", "This form was already answered."]
    assert buttons(line, user) == []
    assert len(submits(dify)) == 1


async def test_an_expired_form_says_so_in_one_line(line: FakeLine, tmp_path: Path) -> None:
    # The fake Dify's clock runs two hours behind: its one-hour form is already past expiry.
    early = flow(clock=lambda: time.time() - 7200)
    async with early as dify, difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        user = line.events.user()
        await paused(running, line, user)
        await deliver(running, line, tap(line, user, 0, user=user))
        await line.until(lambda: len(line.texts(user)) == 2, what="the notice")
    assert line.texts(user)[-1] == "This form has expired."
    assert buttons(line, user) == [] and submits(dify) == []
    assert [s.via for s in line.chats[user]] == ["reply", "reply"]


async def test_a_member_who_may_not_answer_is_told_and_the_form_stays(
    line: FakeLine, tmp_path: Path
) -> None:
    alice, bob, group = line.events.user("Alice"), line.events.user("Bob"), line.events.group()
    async with flow() as dify, difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await paused(running, line, alice, group)
        await deliver(running, line, tap(line, group, 0, user=bob, group=True))
        await line.until(lambda: len(line.texts(group)) == 2, what="the notice")
        assert "only the person who asked" in line.texts(group)[-1]
        # LINE has nothing only Bob would see: the notice goes to the group, with the buttons
        # again (Bob's tap hid them), so Alice can still answer.
        assert [b["label"] for b in buttons(line, group)] == ["Approve", "Reject"]
        # The reference says a group source's userId is "only included in message events": a
        # tap without it is nobody's, so not the asker's.
        anonymous = tap(line, group, 0, user=alice, group=True)
        del anonymous["source"]["userId"]
        await deliver(running, line, anonymous)
        await line.until(lambda: len(line.texts(group)) == 3, what="the second notice")
        assert "only the person who asked" in line.texts(group)[-1] and submits(dify) == []
        await deliver(running, line, tap(line, group, 0, user=alice, group=True))
        await line.until(lambda: len(line.texts(group)) == 4, what="the run's continuation")
    assert line.texts(group)[-1] == "after form: action=approve"
    assert [s["user"] for s in submits(dify)] == [f"line:{line.bot_user_id}:{group}"]


async def test_anyone_in_the_group_may_answer_when_set(line: FakeLine, tmp_path: Path) -> None:
    alice, bob, group = line.events.user("Alice"), line.events.user("Bob"), line.events.group()
    settings = line_settings(line, forms_anyone_may_answer=True)
    async with flow() as dify, difybot(dify, tmp_path / "db", **settings) as running:
        await paused(running, line, alice, group)
        await deliver(running, line, tap(line, group, 1, user=bob, group=True))
        await line.until(lambda: len(line.texts(group)) == 2, what="the run's continuation")
    assert line.texts(group)[-1] == "after form: action=reject"
    assert len(submits(dify)) == 1


async def test_a_form_with_a_field_asks_it_as_a_message(line: FakeLine, tmp_path: Path) -> None:
    user = line.events.user()
    async with (
        flow(HumanInput()) as dify,
        difybot(dify, tmp_path / "db", **line_settings(line)) as running,
    ):
        await paused(running, line, user)
        assert "{{#$output" not in line.texts(user)[0]
        await deliver(running, line, tap(line, user, 1, user=user))
        await line.until(lambda: len(line.texts(user)) == 2, what="the field's question")
        assert line.texts(user)[-1] == "Please reply with “note”:"
        assert buttons(line, user) == [] and submits(dify) == []
        await deliver(running, line, line.events.text("looks good", user=user))
        await line.until(lambda: len(line.texts(user)) == 3, what="the run's continuation")
    assert line.texts(user)[-1] == "after form: action=reject note=looks good"
    assert submits(dify)[0]["inputs"] == {"note": "looks good"}
    assert submits(dify)[0]["action"] == "reject"
    assert [s.via for s in line.chats[user]] == ["reply"] * 3 and line.calls_to(PUSH) == []
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_a_tap_after_a_restart_answers(line: FakeLine, tmp_path: Path) -> None:
    user = line.events.user()
    async with flow() as dify:
        async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
            await paused(running, line, user)
        async with difybot(dify, tmp_path / "db", **line_settings(line)) as again:  # same db
            await deliver(again, line, tap(line, user, 1, user=user))
            await line.until(lambda: len(line.texts(user)) == 2, what="the run's continuation")
    assert line.texts(user)[-1] == "after form: action=reject"
    assert len(submits(dify)) == 1 and line.calls_to(PUSH) == []


async def test_a_redelivered_tap_answers_once(line: FakeLine, tmp_path: Path) -> None:
    user = line.events.user()
    async with flow() as dify:
        async with difybot(dify, tmp_path / "db", **line_settings(line)) as running:
            await paused(running, line, user)
            pressed = tap(line, user, 0, user=user)
            await deliver(running, line, pressed)
            await deliver(running, line, line.events.redelivered(pressed))
            await line.until(lambda: len(line.texts(user)) == 2, what="the run's continuation")
            assert duplicates(running) == 1  # dropped before anything was started for it
        async with difybot(dify, tmp_path / "db", **line_settings(line)) as other:  # a replica
            assert await deliver(other, line, line.events.redelivered(pressed)) == 200
            assert duplicates(other) == 1
    assert line.texts(user)[1:] == ["after form: action=approve"]  # no "already answered"
    assert len(submits(dify)) == 1 and len(line.calls_to(REPLY)) == 2


async def test_past_the_reply_window_the_form_and_its_continuation_are_pushed_once(
    line: FakeLine, tmp_path: Path
) -> None:
    user = line.events.user()
    line.fail_next(PUSH, 500, after_accept=True)  # the form's push: sent, its answer lost
    settings = line_settings(line, line_reply_window=0.001)
    async with flow() as dify, difybot(dify, tmp_path / "db", **settings) as running:
        await paused(running, line, user)
        await deliver(running, line, tap(line, user, 0, user=user))
        await line.until(lambda: len(line.texts(user)) == 2, what="the run's continuation")
    first, again, continued = line.calls_to(PUSH)
    assert (first.status, again.status, continued.status) == (500, 409, 200)
    assert first.retry_key == again.retry_key != continued.retry_key
    assert uuid.UUID(str(continued.retry_key))
    assert line.texts(user)[1] == "after form: action=approve"
    assert line.calls_to(REPLY) == []


@pytest.mark.allow_warnings(r"form submit failed")
@pytest.mark.parametrize(
    ("refusal", "notice"),
    [
        (HttpError(500, "internal_server_error", "boom"), "could not be sent just now"),
        (HttpError(400, "invalid_form_data", "Invalid action: approve"), "Invalid action"),
    ],
)
async def test_a_submit_dify_refuses_keeps_the_form_open(
    line: FakeLine, tmp_path: Path, refusal: HttpError, notice: str
) -> None:
    user = line.events.user()
    async with flow() as dify, difybot(dify, tmp_path / "db", **line_settings(line)) as running:
        await paused(running, line, user)
        (form,) = dify.runs[0].forms
        dify.enqueue(f"/form/human_input/{form.token}", refusal)
        await deliver(running, line, tap(line, user, 0, user=user))
        await line.until(lambda: len(line.texts(user)) == 2, what="the notice")
        assert notice in line.texts(user)[-1]
        assert [b["label"] for b in buttons(line, user)] == ["Approve", "Reject"]  # again
        await deliver(running, line, tap(line, user, 0, user=user))
        await line.until(lambda: len(line.texts(user)) == 3, what="the run's continuation")
    assert line.texts(user)[-1] == "after form: action=approve"
    assert len(submits(dify)) == 2


async def test_a_fields_question_is_pushed_when_the_taps_token_is_refused(tmp_path: Path) -> None:
    async with FakeLine(reply_token_ttl=0.0) as line:  # every reply token is already stale
        user = line.events.user()
        async with (
            flow(HumanInput()) as dify,
            difybot(dify, tmp_path / "db", **line_settings(line)) as running,
        ):
            await paused(running, line, user)
            first, stale = tap(line, user, 0, user=user), tap(line, user, 1, user=user)
            await deliver(running, line, first)
            await line.until(lambda: len(line.texts(user)) == 2, what="the field's question")
            assert line.texts(user)[-1] == "Please reply with “note”:"
            await deliver(running, line, line.events.text("fine", user=user))
            await line.until(lambda: len(line.texts(user)) == 3, what="the run's continuation")
            await deliver(running, line, stale)  # a second tap, its token refused too
            await line.until(lambda: len(line.calls_to(REPLY)) == 4, what="the refused notice")
        assert len(submits(dify)) == 1
        assert line.texts(user)[-1] == "after form: action=approve note=fine"
        assert [s.via for s in line.chats[user]] == ["push"] * 3  # "already answered" not pushed
        assert all(c.status == 400 for c in line.calls_to(REPLY))
        assert len({c.retry_key for c in line.calls_to(PUSH)}) == 3

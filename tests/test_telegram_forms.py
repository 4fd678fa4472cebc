"""Dify Human Input forms on Telegram, end to end (fake Dify 1.14.1 that pauses, fake Bot API):
one inline button per action under the answer, a press answered with answerCallbackQuery and the
run going on in the same message; a second press, an expired form, a press by someone who may not
answer, fields asked as messages (ForceReply in a group), a press Telegram delivers twice, a
submit Dify fails, a form answered in Dify itself."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.dify_behaviours import HttpError
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram_store import Message
from tests.fakes.wechat_app import Running
from tests.test_telegram_e2e import SECRET, telegram_bot

NO_FIELDS = HumanInput(
    content="Deploy {{#sys.query#}}?",
    inputs=(),
    after=("after form: action=", "{{#human.__action_id#}}"),
)
HOOK = {"telegram_webhook_url": "https://bot.example.com/telegram",
        "telegram_webhook_secret": SECRET}  # fmt: skip
_queries = itertools.count(900_000)


def flow(node: HumanInput = NO_FIELDS, **extra: Any) -> FakeDify:
    return FakeDify(flow=HumanFlow(steps=(node,)), version="1.14.1", **extra)


def form_buttons(message: Message) -> list[tuple[str, str]]:
    """The form's action buttons (not the inert one left once it is closed)."""
    pairs = [(b["text"], b["callback_data"]) for b in message.buttons()]
    return [(text, data) for text, data in pairs if data.startswith("form:") and data != "form:-"]


async def paused(tg: FakeTelegram, chat_id: int) -> Message:
    """The answer message once it shows the form's buttons."""

    def shown() -> Message | None:
        return next((m for m in tg.state.sent_by_bot(chat_id) if form_buttons(m)), None)

    await tg.until(lambda: shown() is not None, 10, "the form's buttons")
    message = shown()
    assert message is not None
    return message


def press(tg: FakeTelegram, message: Message, data: str, user: dict[str, Any]) -> dict[str, Any]:
    """A press on ``data`` as the message showed it then (a stale button may be pressed)."""
    body = {"id": str(next(_queries)), "from": user, "message": message.shape(),
            "chat_instance": "7919", "data": data}  # fmt: skip
    update = tg.push({"callback_query": body})
    assert update is not None
    return update


async def pressed(tg: FakeTelegram, count: int) -> dict[str, Any]:
    """The ``count``-th answerCallbackQuery's arguments."""
    return (await tg.wait_for("answerCallbackQuery", count))[count - 1].args


def submits(dify: FakeDify) -> list[Any]:
    return [r.json for r in dify.requests if r.method == "POST" and r.path.startswith("/form/")]


async def settled(tg: FakeTelegram, running: Running, message: Message, text: str) -> None:
    await tg.until(lambda: text in (message.text or ""), 10, repr(text))
    await running.core.inbox.idle()


async def test_a_press_submits_and_the_run_goes_on_in_the_same_message(tmp_path: Path) -> None:
    async with flow() as dify, FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        asker = tg.state.users[chat.id]
        tg.inbound.text(chat, "v42")
        message = await paused(tg, chat.id)
        assert "before form: v42" in (message.text or "") and "Deploy v42?" in (message.text or "")
        (approve, approve_data), (reject, reject_data) = form_buttons(message)
        assert (approve, reject) == ("Approve", "Reject")
        assert len(reject_data.encode()) <= 64
        stale = Message(**{**message.__dict__})  # the buttons as the user still sees them
        press(tg, message, reject_data, asker)
        assert (await pressed(tg, 1))["text"] == "✓ Reject"
        await settled(tg, running, message, "after form: action=reject")
        assert form_buttons(message) == []
        assert len(tg.state.sent_by_bot(chat.id)) == 1  # the run went on in the form's message
        assert "before form: v42" in (message.text or "")
        # One edit: the run's text replaced the form's, and its buttons.
        assert message.history == ["before form: v42\n\nDeploy v42?",
                                   "before form: v42after form: action=reject"]  # fmt: skip
        press(tg, stale, approve_data, asker)  # a second press, on a button still on screen
        assert (await pressed(tg, 2))["text"] == "This form was already answered."
        await running.core.inbox.idle()
    (submit,) = submits(dify)
    assert submit["action"] == "reject" and submit["inputs"] == {}
    assert tg.rate_limited == []


async def test_an_expired_form_keeps_one_inert_button_saying_so(tmp_path: Path) -> None:
    # The fake Dify's clock runs two hours behind: its one-hour form is already past expiry.
    early = flow(clock=lambda: time.time() - 7200)
    async with early as dify, FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "v42")
        message = await paused(tg, chat.id)
        tg.inbound.press(message, form_buttons(message)[0][1])
        assert (await pressed(tg, 1))["text"] == "This form has expired."
        await tg.until(lambda: not form_buttons(message), 10, "the buttons gone")
        assert [(b["text"], b["callback_data"]) for b in message.buttons()] == [
            ("This form has expired.", "form:-")
        ]
        tg.inbound.press(message, "form:-")
        assert (await pressed(tg, 2))["text"] == "This button no longer works."
        await running.core.inbox.idle()
    assert submits(dify) == []


async def test_in_a_group_only_the_asker_may_answer(tmp_path: Path) -> None:
    async with flow() as dify, FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        group = tg.inbound.group()
        alice, bob = tg.inbound.user(first_name="Alice"), tg.inbound.user(first_name="Bob")
        tg.inbound.text(group, "@dify_fake_bot v42", user=alice)
        message = await paused(tg, group.id)
        approve = form_buttons(message)[0][1]
        tg.inbound.press(message, approve, user=bob)
        told = await pressed(tg, 1)
        assert "only the person who asked" in told["text"]  # a toast Bob alone sees
        assert submits(dify) == [] and form_buttons(message)
        tg.inbound.press(message, approve, user=alice)
        assert (await pressed(tg, 2))["text"] == "✓ Approve"
        await settled(tg, running, message, "after form: action=approve")
        assert form_buttons(message) == []
    (submit,) = submits(dify)
    assert submit["action"] == "approve"
    assert tg.rate_limited == []


async def test_a_form_with_a_field_asks_it_as_a_message(tmp_path: Path) -> None:
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path) as running,
    ):
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "ship it?")
        message = await paused(tg, chat.id)
        tg.inbound.press(message, form_buttons(message)[1][1])  # Reject
        assert (await pressed(tg, 1))["text"] == "✓ Reject"
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) == 2, 10, "the field's question")
        question = tg.state.sent_by_bot(chat.id)[1]
        assert question.text == "Please reply with “note”:"
        assert form_buttons(message) == []  # the action is chosen
        await running.core.inbox.idle()
        tg.inbound.text(chat, "looks good")
        await tg.until(lambda: len(tg.state.sent_by_bot(chat.id)) == 3, 10, "the resumed run")
        await running.core.inbox.idle()
        resumed = tg.state.sent_by_bot(chat.id)[2]
    assert "after form: action=reject note=looks good" in (resumed.text or "")
    (submit,) = submits(dify)
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "reject"
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_in_a_group_the_field_is_asked_with_a_forced_reply(tmp_path: Path) -> None:
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path) as running,
    ):
        group = tg.inbound.group()
        alice = tg.inbound.user(first_name="Alice")
        tg.inbound.text(group, "@dify_fake_bot ship it?", user=alice)
        message = await paused(tg, group.id)
        tg.inbound.press(message, form_buttons(message)[0][1], user=alice)
        await tg.until(lambda: len(tg.state.sent_by_bot(group.id)) == 2, 10, "the question")
        question = tg.state.sent_by_bot(group.id)[1]
        assert question.text == "Alice Please reply with “note”:"
        assert question.reply_markup is not None
        assert question.reply_markup["force_reply"] and question.reply_markup["selective"]
        assert question.reply_markup["input_field_placeholder"] == "note"
        assert question.reply_to is message
        await running.core.inbox.idle()
        tg.inbound.text(group, "looks good", user=alice, reply_to=question)
        await tg.until(lambda: len(tg.state.sent_by_bot(group.id)) == 3, 10, "the resumed run")
        await running.core.inbox.idle()
        resumed = tg.state.sent_by_bot(group.id)[2]
    assert "after form: action=approve note=looks good" in (resumed.text or "")
    (submit,) = submits(dify)
    assert submit["inputs"] == {"note": "looks good"}
    assert len(dify.requests_to("/chat-messages")) == 1


async def test_a_press_delivered_twice_is_answered_once(tmp_path: Path) -> None:
    async with (
        flow() as dify,
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path, **HOOK) as running,
    ):
        url = f"{running.url}/telegram"
        chat = tg.inbound.private_chat()
        asked = tg.inbound.text(chat, "v42")
        assert asked is not None
        await tg.post_update(url, asked)
        message = await paused(tg, chat.id)
        update = tg.inbound.press(message, form_buttons(message)[0][1])
        assert update is not None
        first = await tg.post_update(url, update)
        again = await tg.post_update(url, update)  # Telegram resends it (no 2xx seen)
        await settled(tg, running, message, "after form: action=approve")
        assert (first.status, again.status) == (200, 200)
    assert len(submits(dify)) == 1
    assert len(tg.calls_to("answerCallbackQuery")) == 1


@pytest.mark.allow_warnings("form submit failed")
async def test_when_dify_cannot_take_the_answer_the_form_stays_for_another_press(
    tmp_path: Path,
) -> None:
    async with flow() as dify, FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "v42")
        message = await paused(tg, chat.id)
        (form,) = dify.runs[0].forms
        dify.enqueue(f"/form/human_input/{form.token}", HttpError(500, "internal", "boom"))
        approve = form_buttons(message)[0][1]
        tg.inbound.press(message, approve)
        told = await pressed(tg, 1)
        assert told["text"] == "The answer could not be sent just now. Please try again."
        assert told["show_alert"] is True  # a box the user closes, not a passing toast
        assert form_buttons(message)  # the form stays open
        tg.inbound.press(message, approve)
        assert (await pressed(tg, 2))["text"] == "✓ Approve"
        await settled(tg, running, message, "after form: action=approve")
    assert [s["action"] for s in submits(dify)] == ["approve", "approve"]


async def test_a_form_answered_in_dify_itself_keeps_one_button_saying_so(tmp_path: Path) -> None:
    async with flow() as dify, FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "v42")
        message = await paused(tg, chat.id)
        (form,) = dify.runs[0].forms
        async with httpx.AsyncClient(base_url=dify.base_url) as http:  # Dify's web app
            done = await http.post(
                f"form/human_input/{form.token}",
                json={"inputs": {}, "action": "reject", "user": "web-user"},
                headers={"Authorization": f"Bearer {dify.api_key}"},
            )
        assert done.status_code == 200
        tg.inbound.press(message, form_buttons(message)[0][1])
        assert (await pressed(tg, 1))["text"] == "This form was already answered."
        await tg.until(lambda: not form_buttons(message), 10, "the buttons gone")
        assert [b["text"] for b in message.buttons()] == ["This form was already answered."]
        await running.core.inbox.idle()
    assert len(submits(dify)) == 2  # Dify's own, and ours refused with 412


async def test_a_run_that_shows_no_text_yet_loses_the_buttons_at_once(tmp_path: Path) -> None:
    held = HumanInput(content="Deploy {{#sys.query#}}?", inputs=(), hold_after=0,
                      after=("after form: action=", "{{#human.__action_id#}}"))  # fmt: skip
    async with (
        flow(held) as dify,
        FakeTelegram() as tg,
        telegram_bot(dify, tg, tmp_path) as running,
    ):
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "v42")
        message = await paused(tg, chat.id)
        tg.inbound.press(message, form_buttons(message)[0][1])
        await tg.until(lambda: not form_buttons(message), 10, "the buttons gone")
        assert message.text == "before form: v42\n\nDeploy v42?"  # nothing new yet
        dify.release(dify.runs[0].run_id)
        await settled(tg, running, message, "after form: action=approve")

"""Dify Human Input forms on Feishu, end to end (fake Feishu, fake Dify 1.14.1 that pauses): the
answer's card ends, the form follows in a card of its own with one button per action (its fields
as inputs in a form container); a press answers it through ``card.action.trigger``, the run goes
on in the answer's card and the form's card is greyed with the choice. A second press, a
redelivered press, an expired form and a user who may not answer are each told in a toast; a press
without the fields' values asks them as messages."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.dify_behaviours import HttpError, Stall, paragraph, select
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import Delivery, FeishuCallbacks, Person, mention
from tests.fakes.feishu_store import FeishuMessage, card_texts
from tests.fakes.wechat_app import Running, difybot
from tests.test_feishu_connection import p2p as connection_p2p
from tests.test_feishu_connection import push
from tests.test_feishu_connection import settings as connection_settings
from tests.test_feishu_e2e import OTHER, USER, answered, events, feishu_settings, p2p

NO_FIELDS = HumanInput(inputs=(), after=("after form: action=", "{{#human.__action_id#}}"))


def submits(dify: FakeDify) -> list[Any]:
    return [r.json for r in dify.requests if r.path.startswith("/form/")]


async def settled(running: Running) -> None:
    await answered(running)
    await running.core.inbox.idle()
    await answered(running)


async def paused(running: Running, feishu: FakeFeishu, question: str = "ship it?") -> None:
    callbacks = FeishuCallbacks()
    delivery = await callbacks.post(
        events(running), callbacks.message_received(p2p(feishu, question))
    )
    assert delivery.status == 200
    await settled(running)


def cards(feishu: FakeFeishu) -> tuple[FeishuMessage, FeishuMessage]:
    """The answer's card (a CardKit entity) and the form's own card (an inline card)."""
    answer, form = feishu.bot_messages()
    assert answer.card_id and not form.card_id
    return answer, form


def buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") == "button":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card.get("body"))
    return found


async def press(
    running: Running,
    form: FeishuMessage,
    index: int,
    *,
    user: str = USER,
    values: dict[str, str] | None = None,
    callbacks: FeishuCallbacks | None = None,
    seen: dict[str, Any] | None = None,
) -> Delivery:
    """Press the form card's ``index``th button as the Feishu client does: a submit button of a
    form container sends the inputs' values (by name) as ``form_value``. ``seen``: the card as a
    client still shows it (not updated yet)."""
    callbacks = callbacks or FeishuCallbacks()
    button = buttons(seen or form.content)[index]
    form_value = None
    if button.get("form_action_type") == "submit":
        form_value = {f"field_{name}": value for name, value in (values or {}).items()}
    event = callbacks.card_action(value=button["behaviors"][0]["value"],
                                  message_id=form.message_id, chat_id=form.chat_id,
                                  operator=Person(user), form_value=form_value,
                                  name=button.get("name"))  # fmt: skip
    delivery = await callbacks.post(events(running), event)
    assert delivery.status == 200
    await settled(running)
    return delivery


async def test_a_button_submits_and_the_run_goes_on_in_the_answer_card(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        answer, form = cards(feishu)
        seen = copy.deepcopy(form.content)
        assert feishu.text(answer.message_id) == "before form: ship it?"
        assert "Please review: ship it?" in card_texts(form.content)[0]
        labelled = [(b["text"]["content"], b["type"]) for b in buttons(form.content)]
        assert labelled == [("Approve", "primary"), ("Reject", "default")]
        callbacks = FeishuCallbacks()
        first = await press(running, form, 1, callbacks=callbacks)
        assert first.json == {"toast": {"type": "success", "content": "Review: Reject"}}
        assert first.sealed is not None
        again = await callbacks.redeliver(events(running), first.sealed)  # Feishu retries
        await settled(running)
        shown = feishu.text(answer.message_id)
        closed = feishu.messages.messages[form.message_id].content
        second = await press(running, form, 0, seen=seen)  # a client not updated yet
        assert len(feishu.bot_messages()) == 2  # the run went on in the answer's card
    assert again.status == 200 and again.json == {}
    assert shown.startswith("before form: ship it?after form: action=reject\n👍 Helpful")
    assert buttons(closed) == [] and "Review: Reject" in "\n".join(card_texts(closed))
    assert second.json == {
        "toast": {"type": "warning", "content": "This form was already answered."}
    }
    (submit,) = submits(dify)  # the run's own Dify user: the asker's
    assert submit["inputs"] == {} and submit["action"] == "reject"
    assert submit["user"].startswith("feishu:") and submit["user"].endswith(f":{USER}")


def form_container(card: dict[str, Any]) -> dict[str, Any]:
    (container,) = [e for e in card["body"]["elements"] if e["tag"] == "form"]
    return container


async def test_fields_are_inputs_in_a_form_container(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        answer, form = cards(feishu)
        note, approve, reject = form_container(form.content)["elements"]
        assert (note["tag"], note["name"], note["input_type"]) == ("input", "field_note",
                                                                   "multiline_text")  # fmt: skip
        assert approve["form_action_type"] == reject["form_action_type"] == "submit"
        assert approve["name"] != reject["name"]
        pressed = await press(running, form, 1, values={"note": "looks good"})
        shown = feishu.text(answer.message_id)
    assert pressed.json == {"toast": {"type": "success", "content": "Review: Reject"}}
    assert "before form: ship it?after form: action=reject note=looks good" in shown
    (submit,) = submits(dify)
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "reject"


async def test_refused_values_are_told_and_the_form_stays_open(tmp_path: Path) -> None:
    node = HumanInput(inputs=(paragraph("note"), select("level", ("low", "high"))))
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(node,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        _, form = cards(feishu)
        level = form_container(form.content)["elements"][1]
        assert level["tag"] == "select_static" and level["name"] == "field_level"
        assert [o["value"] for o in level["options"]] == ["low", "high"]
        refused = await press(running, form, 0, values={"note": "ok"})  # no level chosen
        still = buttons(form.content)
        taken = await press(running, form, 0, values={"note": "ok", "level": "high"})
    toast = refused.json["toast"]
    assert toast["type"] == "error" and "Missing required inputs: level" in toast["content"]
    assert len(still) == 2  # the form stays open
    assert taken.json == {"toast": {"type": "success", "content": "Review: Approve"}}
    assert [s["inputs"] for s in submits(dify)] == [{"note": "ok"}, {"note": "ok", "level": "high"}]


async def test_a_press_without_values_asks_the_fields_as_messages(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        _, form = cards(feishu)
        pressed = await press(running, form, 1)  # the client sent no form_value
        asked = feishu.bot_messages()[-1]
        closed = form.content
        await paused(running, feishu, "looks good")
        texts = [feishu.text(m.message_id) for m in feishu.bot_messages()]
    assert pressed.json == {"toast": {"type": "info", "content": "Please reply with “note”:"}}
    assert card_texts(asked.content) == ["Please reply with “note”:"]
    assert buttons(closed) == [] and "Review: Reject" in "\n".join(card_texts(closed))
    assert any("after form: action=reject note=looks good" in text for text in texts[3:])
    (submit,) = submits(dify)
    assert submit["inputs"] == {"note": "looks good"} and submit["action"] == "reject"


async def test_an_expired_form_loses_its_buttons(tmp_path: Path) -> None:
    # The fake Dify's clock runs two hours behind: its one-hour form is already past expiry.
    early = HumanFlow(steps=(NO_FIELDS,))
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=early, version="1.14.1", clock=lambda: time.time() - 7200) as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        _, form = cards(feishu)
        pressed = await press(running, form, 0)
    assert pressed.json == {"toast": {"type": "warning", "content": "This form has expired."}}
    assert buttons(form.content) == []
    assert "This form has expired." in "\n".join(card_texts(form.content))
    assert submits(dify) == []


async def test_only_the_asker_may_answer(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        _, form = cards(feishu)
        refused = await press(running, form, 0, user=OTHER)
        patched = feishu.calls_to("im.message.patch")
        taken = await press(running, form, 0)
    notice = "Sorry, only the person who asked can answer this form."
    assert refused.json == {"toast": {"type": "warning", "content": notice}}
    assert patched == []  # the form card is left as it was
    assert taken.json == {"toast": {"type": "success", "content": "Review: Approve"}}
    assert [s["action"] for s in submits(dify)] == ["approve"]


def form_path(dify: FakeDify) -> str:
    (token,) = dify.engine.forms
    return f"/form/human_input/{token}"


async def test_a_slow_verdict_is_toasted_at_once_and_the_run_goes_on(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        running.adapter("feishu").form_wait = 0.05  # Feishu's 3 s, shrunk
        await paused(running, feishu)
        answer, form = cards(feishu)
        dify.enqueue(form_path(dify), Stall(0.5))
        pressed = await press(running, form, 0)
        shown = feishu.text(answer.message_id)
    assert pressed.json == {"toast": {"type": "info", "content": "Sending your answer…"}}
    assert "after form: action=approve" in shown
    assert buttons(form.content) == [] and "Review: Approve" in "\n".join(card_texts(form.content))


@pytest.mark.allow_warnings("form submit failed")
async def test_a_failed_submit_keeps_the_form_open(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
    ):
        await paused(running, feishu)
        _, form = cards(feishu)
        dify.enqueue(form_path(dify), HttpError(500, "internal_server_error", "boom"))
        failed = await press(running, form, 0)
        still = len(buttons(form.content))
        taken = await press(running, form, 0)
    notice = "The answer could not be sent just now. Please try again."
    assert failed.json == {"toast": {"type": "error", "content": notice}}
    assert still == 2
    assert taken.json == {"toast": {"type": "success", "content": "Review: Approve"}}


async def test_in_a_group_thread_anyone_may_answer_when_allowed(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db",
                **feishu_settings(feishu, forms_anyone_may_answer=True)) as running,
    ):  # fmt: skip
        group, callbacks = feishu.messages.group_chat(), FeishuCallbacks()
        asked = feishu.user_message(chat_id=group, chat_type="group", sender=USER,
                                    content={"text": "@_user_1 ship it?"},
                                    mentions=[mention()])  # fmt: skip
        await callbacks.post(events(running), callbacks.message_received(asked))
        await settled(running)
        _, form = cards(feishu)
        assert form.thread_id == asked.thread_id  # the form card is in the thread too
        pressed = await press(running, form, 0, user=OTHER)  # no values: asked in the thread
        question = feishu.bot_messages()[-1]
        reply = feishu.user_message(chat_id=group, chat_type="group", sender=OTHER,
                                    content={"text": "fine by me"}, root_id=asked.message_id,
                                    thread_id=asked.thread_id)  # fmt: skip
        await callbacks.post(events(running), callbacks.message_received(reply))
        await settled(running)
        texts = [feishu.text(m.message_id) for m in feishu.bot_messages(group)]
        threads = {m.thread_id for m in feishu.bot_messages(group)}
    assert pressed.json == {"toast": {"type": "info", "content": "Please reply with “note”:"}}
    assert question.thread_id == asked.thread_id
    assert card_texts(question.content) == ["Please reply with “note”:"]
    assert threads == {asked.thread_id}
    assert any("after form: action=approve note=fine by me" in text for text in texts[3:])
    (submit,) = submits(dify)
    assert submit["inputs"] == {"note": "fine by me"} and submit["action"] == "approve"


async def test_a_press_after_a_restart_goes_on_in_the_same_card(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
    ):
        async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
            await paused(running, feishu)
        answer, form = cards(feishu)
        async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as restarted:
            pressed = await press(restarted, form, 1)
        shown = feishu.text(answer.message_id)
    assert pressed.json == {"toast": {"type": "success", "content": "Review: Reject"}}
    assert shown.startswith("before form: ship it?after form: action=reject")
    assert len(feishu.bot_messages()) == 2


async def test_a_press_over_the_long_connection(tmp_path: Path) -> None:
    async with (
        FakeFeishu() as feishu,
        FakeDify(flow=HumanFlow(steps=(NO_FIELDS,)), version="1.14.1") as dify,
        difybot(dify, tmp_path / "db", **connection_settings(feishu)) as running,
    ):
        callbacks = FeishuCallbacks(encrypt_key=None)
        await push(feishu, callbacks.message_received(connection_p2p(feishu, "ship it?")))
        await settled(running)
        answer, form = cards(feishu)
        button = buttons(form.content)[0]
        event = callbacks.card_action(value=button["behaviors"][0]["value"],
                                      message_id=form.message_id, chat_id=form.chat_id,
                                      operator=Person(USER))  # fmt: skip
        toast = await push(feishu, event)
        await settled(running)
        shown = feishu.text(answer.message_id)
    assert toast == {"toast": {"type": "success", "content": "Review: Approve"}}
    assert shown.startswith("before form: ship it?after form: action=approve")
    assert [s["action"] for s in submits(dify)] == ["approve"]

"""Dify Human Input forms on Slack, end to end (fake Dify 1.14.1 that pauses, fake Slack):
buttons under the answer, a modal for fields, the run going on in the same message, a restart
between the pause and the click, a second click, an expired form, a click by someone else."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.fakes.dify_behaviours import select
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_bot import SlackBot, slack_bot, slack_bot_on
from tests.fakes.slack_payloads import click, dm, load, mention
from tests.fakes.slack_store import Message

NO_FIELDS = HumanInput(
    content="Deploy {{#sys.query#}}?",
    inputs=(),
    after=("after form: action=", "{{#human.__action_id#}}"),
)
FIELDS = HumanInput()  # the captured node: a paragraph ``note``, Approve / Reject


def flow(node: HumanInput = NO_FIELDS) -> dict[str, Any]:
    return {"flow": HumanFlow(steps=(node,)), "version": "1.14.1"}


async def paused(bot: SlackBot, question: str = "v42") -> Message:
    """Ask in a DM; the answer message once it shows the form's buttons."""
    await bot.event(dm(question, ts="1700000020.000020"))
    await bot.slack.until(lambda: _with_buttons(bot) is not None, what="the form's buttons")
    message = _with_buttons(bot)
    assert message is not None
    return message


def _with_buttons(bot: SlackBot) -> Message | None:
    return next(
        (m for m in bot.slack.messages.in_channel("D111") if "dify_form_0" in m.action_ids()),
        None,
    )


def press(message: Message, index: int, *, user: str = "U111") -> dict[str, Any]:
    (actions,) = [b for b in message.blocks if b.get("block_id") == "dify_form"]
    button = actions["elements"][index]
    body = click(button["action_id"], button["value"], channel="D111", message_ts=message.ts,
                 user=user)  # fmt: skip
    body["message"]["blocks"] = copy.deepcopy(message.blocks)
    return body


def submits(dify: FakeDify) -> list[Any]:
    return [r.json for r in dify.requests if r.method == "POST" and r.path.startswith("/form/")]


async def resumed(bot: SlackBot, message: Message, text: str) -> Message:
    await bot.slack.until(lambda: text in message.body, what=f"{text!r} in the message")
    await bot.adapter.answers.drain()
    return message


async def test_a_button_submits_and_the_run_goes_on_in_the_same_message(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow()) as bot:
        message = await paused(bot)
        assert message.body.startswith("before form: v42") and "Deploy v42?" in message.body
        (approve, reject) = message.blocks[-1]["elements"]
        assert (approve["text"]["text"], approve["style"]) == ("Approve", "primary")
        assert reject["text"]["text"] == "Reject" and "style" not in reject
        await bot.click(press(message, 0))
        await resumed(bot, message, "after form: action=approve")
        assert submits(bot.dify) == [
            {"inputs": {}, "action": "approve", "user": "slack:T0001:U111"}
        ]
        (only,) = bot.slack.messages.in_channel("D111")  # the same message, edited
        assert only.ts == message.ts
        assert only.body.startswith("before form: v42")  # the text before the pause stays
        assert "dify_form_0" not in only.action_ids()  # the buttons are gone
        assert len(bot.dify.requests_to("/chat-messages")) == 1  # Dify ran it once


async def test_a_form_with_fields_opens_a_modal_and_its_submission_answers(
    tmp_path: Path,
) -> None:
    async with slack_bot(tmp_path, dify=flow(FIELDS)) as bot:
        message = await paused(bot)
        body = press(message, 0)
        await bot.click(body)
        (opened,) = await bot.slack.wait_for("views.open")
        assert opened["trigger_id"] == body["trigger_id"]
        view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
        (note,) = [b for b in view["blocks"] if b["type"] == "input"]
        assert note["element"]["type"] == "plain_text_input" and note["element"]["multiline"]
        assert view["submit"]["text"] == "Approve"
        submission = load("view_submission")
        submission["view"].update(private_metadata=view["private_metadata"])
        submission["view"]["state"]["values"] = {
            note["block_id"]: {"value": {"type": "plain_text_input", "value": "ship it"}}
        }
        ack = await bot.click(submission)
        assert "errors" not in json.dumps(ack)
        await resumed(bot, message, "after form: action=approve note=ship it")
        assert submits(bot.dify) == [
            {"inputs": {"note": "ship it"}, "action": "approve", "user": "slack:T0001:U111"}
        ]


async def test_invalid_values_are_shown_in_the_modal(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow(FIELDS)) as bot:
        message = await paused(bot)
        await bot.click(press(message, 0))
        (opened,) = await bot.slack.wait_for("views.open")
        view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
        submission = load("view_submission")
        submission["view"].update(private_metadata=view["private_metadata"])
        submission["view"]["state"]["values"] = {
            "field_other": {"value": {"type": "plain_text_input", "value": "x"}}
        }  # "note" missing: Dify says 400 invalid_form_data "Missing required inputs: note"
        ack = await bot.click(submission)
        assert "Missing required inputs: note" in json.dumps(ack)
        assert "after form" not in message.body  # still open: it can be answered again


async def test_a_click_after_a_restart_works(tmp_path: Path) -> None:
    async with FakeDify(**flow()) as dify, FakeSlack() as slack:
        async with slack_bot_on(dify, slack, tmp_path) as bot:
            message = await paused(bot)
            await bot.adapter.answers.drain()
        async with slack_bot_on(dify, slack, tmp_path) as bot:  # a new process, same database
            await bot.click(press(message, 1))
            await resumed(bot, message, "after form: action=reject")
        assert len(submits(dify)) == 1
        assert [m.ts for m in slack.messages.in_channel("D111")] == [message.ts]


async def test_a_second_click_is_told_the_form_was_answered(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow()) as bot:
        message = await paused(bot)
        stale = press(message, 0)
        await bot.click(stale)
        await resumed(bot, message, "after form: action=approve")
        await bot.click(
            press(Message("D111", message.ts, None, blocks=stale["message"]["blocks"]), 1)
        )
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert note["text"] == "This form was already answered." and note["user"] == "U111"
        assert len(submits(bot.dify)) == 1


async def test_an_expired_form_loses_its_buttons(tmp_path: Path) -> None:
    # The fake Dify's clock runs two hours behind: its one-hour form is already past expiry.
    early = {**flow(), "clock": lambda: time.time() - 7200}
    async with slack_bot(tmp_path, dify=early) as bot:
        message = await paused(bot)
        await bot.click(press(message, 0))
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert note["text"] == "This form has expired."
        await bot.slack.until(lambda: "dify_form_0" not in message.action_ids())
        assert "This form has expired." in message.context()
        assert submits(bot.dify) == []


async def test_only_the_asker_may_answer_unless_anyone_may(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow()) as bot:
        message = await paused(bot)
        await bot.click(press(message, 0, user="U999"))
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert note["user"] == "U999" and "only the person who asked" in note["text"]
        assert submits(bot.dify) == [] and "dify_form_0" in message.action_ids()
    async with slack_bot(tmp_path / "2", dify=flow(), forms_anyone_may_answer=True) as bot:
        message = await paused(bot)
        await bot.click(press(message, 0, user="U999"))
        await resumed(bot, message, "after form: action=approve")
        # Dify gets the run's user, whoever clicked (only that user may follow the run).
        assert submits(bot.dify)[0]["user"] == "slack:T0001:U111"


async def test_a_form_answered_in_dify_itself_loses_its_buttons(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow()) as bot:
        message = await paused(bot)
        (form,) = bot.dify.runs[0].forms
        async with httpx.AsyncClient(base_url=bot.dify.base_url) as http:  # Dify's web app
            done = await http.post(
                f"form/human_input/{form.token}",
                json={"inputs": {}, "action": "reject", "user": "web-user"},
                headers={"Authorization": f"Bearer {bot.dify.api_key}"},
            )
        assert done.status_code == 200
        await bot.click(press(message, 0))
        (note,) = await bot.slack.wait_for("chat.postEphemeral")
        assert note["text"] == "This form was already answered."
        await bot.slack.until(lambda: "dify_form_0" not in message.action_ids())
        assert len(submits(bot.dify)) == 2  # Dify's own, and ours refused with 412


async def test_a_select_field_is_a_menu_in_the_modal(tmp_path: Path) -> None:
    node = HumanInput(
        content="Where to?",
        inputs=(select("target", ("staging", "prod")),),
        after=("deploying to ", "{{#human.target#}}"),
    )
    async with slack_bot(tmp_path, dify=flow(node)) as bot:
        message = await paused(bot)
        await bot.click(press(message, 0))
        (opened,) = await bot.slack.wait_for("views.open")
        view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
        (menu,) = [b for b in view["blocks"] if b["type"] == "input"]
        element = menu["element"]
        assert element["type"] == "static_select"
        assert [o["value"] for o in element["options"]] == ["staging", "prod"]
        submission = load("view_submission")
        submission["view"].update(private_metadata=view["private_metadata"])
        chosen = {"type": "static_select", "selected_option": element["options"][1]}
        submission["view"]["state"]["values"] = {menu["block_id"]: {"value": chosen}}
        await bot.click(submission)
        await resumed(bot, message, "deploying to prod")
        assert submits(bot.dify)[0]["inputs"] == {"target": "prod"}


async def test_a_form_in_a_natively_streamed_thread_answer(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify=flow()) as bot:
        await bot.event(mention("v7", ts="1700000100.000100"))
        await bot.slack.until(
            lambda: any(
                "dify_form_0" in m.action_ids()
                for m in bot.slack.messages.in_channel("C111", "1700000100.000100")
            ),
            what="the form's buttons under a streamed answer",
        )
        assert "chat.startStream" in bot.slack.methods()  # the answer was streamed natively
        (message,) = [
            m
            for m in bot.slack.messages.in_channel("C111", "1700000100.000100")
            if "dify_form_0" in m.action_ids()
        ]
        body = press(message, 0)
        body["channel"]["id"] = "C111"
        body["container"]["thread_ts"] = body["message"]["thread_ts"] = "1700000100.000100"
        await bot.click(body)
        await resumed(bot, message, "after form: action=approve")
        assert message.body.startswith("before form: v7")

"""Dify Human Input forms in Slack: one button per action under the answer; a form with fields
opens a modal from the clicked button (``views.open`` with the click's ``trigger_id``), answered
by its ``view_submission``. Who may answer, expiry and submit-once are the core's
(``Inbox.answer_form``); this module only draws and reads Slack's shapes.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError

from adapters.slack.blocks import Block
from adapters.slack.sender import slack_error
from bot.contract import FormAnswer, FormVerdict, FormView
from bot.models import FormField

if TYPE_CHECKING:  # the answers build replies, which draw forms with this module
    from adapters.slack.answers import SlackAnswers

log = logging.getLogger(__name__)

FORM_BUTTON = "dify_form_"  # + the action's index: action ids are unique within a block
FORM_BLOCK = "dify_form"
FORM_MODAL = "dify_form_modal"
FIELD_ACTION = "value"
# Block Kit limits (slack_sdk): button text 75, button value 2000, modal title and submit 24,
# option text 75 and value 150, 100 options, an actions block holds 25 elements.
_BUTTON_TEXT, _TITLE, _OPTION, _OPTIONS, _ELEMENTS = 75, 24, 75, 100, 25


def form_blocks(view: FormView) -> list[Block]:
    """The buttons under the form's text; Dify's ``primary`` style is Slack's ``primary``
    (Slack has no accent or ghost: those are plain buttons)."""
    buttons = []
    for index, action in enumerate(view.form.actions[:_ELEMENTS]):
        button: Block = {
            "type": "button",
            "action_id": f"{FORM_BUTTON}{index}",
            "text": {"type": "plain_text", "text": _cut(action.title or action.id, _BUTTON_TEXT)},
            "value": f"{view.ref}|{action.id}",
        }
        if action.style == "primary":
            button["style"] = "primary"
        buttons.append(button)
    return [{"type": "actions", "block_id": FORM_BLOCK, "elements": buttons}] if buttons else []


def form_modal(view: FormView, action: str, metadata: dict[str, str]) -> dict[str, Any]:
    """One input per field; submitting it takes ``action``."""
    form = view.form
    title = next((a.title for a in form.actions if a.id == action), action)
    blocks: list[Block] = []
    if view.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": view.text[:3000]}})
    blocks += [_input(field) for field in form.fields]
    return {
        "type": "modal",
        "callback_id": FORM_MODAL,
        "title": {"type": "plain_text", "text": _cut(form.node_title or title, _TITLE)},
        "submit": {"type": "plain_text", "text": _cut(title, _TITLE)},
        "private_metadata": json.dumps({**metadata, "ref": view.ref, "action": action}),
        "blocks": blocks,
    }


def _input(field: FormField) -> Block:
    label = {"type": "plain_text", "text": _cut(field.name, 2000)}
    element: Block
    if field.type == "select" and field.options:
        options = [
            {"text": {"type": "plain_text", "text": _cut(o, _OPTION)}, "value": o[:150]}
            for o in field.options[:_OPTIONS]
        ]
        element = {"type": "static_select", "action_id": FIELD_ACTION, "options": options}
        if field.default in field.options:
            element["initial_option"] = options[field.options.index(field.default)]
    elif field.is_file:
        # Slack's file_input gives Slack files that would need a download and a Dify upload
        # with the run's user: not done yet, so the field says so instead of failing silently.
        return {
            "type": "section",
            "block_id": f"field_{field.name}",
            "text": {"type": "mrkdwn", "text": f"*{field.name}*: files can't be given here."},
        }
    else:
        element = {"type": "plain_text_input", "action_id": FIELD_ACTION, "multiline": True}
        if field.default:
            element["initial_value"] = field.default
    return {"type": "input", "block_id": f"field_{field.name}", "label": label, "element": element}


def to_inputs(state: dict[str, Any]) -> dict[str, str]:
    """The modal's values by field name (``view.state.values``)."""
    inputs = {}
    for block_id, elements in (state.get("values") or {}).items():
        value = (elements or {}).get(FIELD_ACTION) or {}
        if not block_id.startswith("field_"):
            continue
        chosen = value.get("selected_option") or {}
        text = (
            value.get("value") if value.get("type") == "plain_text_input" else chosen.get("value")
        )
        inputs[block_id.removeprefix("field_")] = str(text or "")
    return inputs


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FormActions:
    """The listeners: a form's button, its modal's submission."""

    def __init__(self, answers: SlackAnswers) -> None:
        self._answers = answers

    def register(self, app: AsyncApp) -> None:
        app.action(re.compile(f"^{FORM_BUTTON}\\d+$"))(self.on_button)
        app.view(FORM_MODAL)(self.on_submission)

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A form's button: open its modal at once when it has fields (the ``trigger_id`` lasts
        3 s), else answer the form after the ack."""
        await ack()
        ref, _, chosen = str(action.get("value") or "").partition("|")
        view = await self._answers.inbox.form(ref)
        if view is not None and view.form.fields:
            await self._open(body, view, chosen)
            return
        self._answers.later(self._answer(body, ref, chosen, {}))

    async def _open(self, body: dict[str, Any], view: FormView, action: str) -> None:
        channel = str((body.get("channel") or {}).get("id") or "")
        message = body.get("message") or {}
        metadata = {"channel": channel, "ts": str(message.get("ts") or "")}
        metadata["thread"] = str(message.get("thread_ts") or "")
        try:
            await self._answers.client.views_open(
                trigger_id=str(body.get("trigger_id") or ""),
                view=form_modal(view, action, metadata),
            )
        except SlackApiError as exc:
            log.warning("could not open a form's modal: %s", slack_error(exc))

    async def on_submission(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """The modal's values: Dify's verdict on them comes back in the modal itself when they
        are refused (``response_action: errors``), so the user fixes them there."""
        view = body.get("view") or {}
        try:
            metadata = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            metadata = {}
        inputs = to_inputs(view.get("state") or {})
        user = str((body.get("user") or {}).get("id") or "")
        answer = await self._answers.inbox.answer_form(
            str(metadata.get("ref") or ""), action=str(metadata.get("action") or ""),
            inputs=inputs, user=user,
        )  # fmt: skip
        if answer.verdict is FormVerdict.INVALID and inputs:
            await ack(
                response_action="errors", errors={f"field_{next(iter(inputs))}": answer.notice}
            )
            return
        await ack()
        body = {**body, "channel": {"id": metadata.get("channel")}}
        body["message"] = {"ts": metadata.get("ts"), "thread_ts": metadata.get("thread") or None}
        self._answers.later(self._told(body, answer))

    async def _answer(
        self, body: dict[str, Any], ref: str, action: str, inputs: dict[str, str]
    ) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        answer = await self._answers.inbox.answer_form(ref, action=action, inputs=inputs, user=user)
        await self._told(body, answer)

    async def _told(self, body: dict[str, Any], answer: FormAnswer) -> None:
        """Tell the clicker what became of it; an expired form, or one answered outside this
        bot, loses its buttons. (One submitted here loses them when the run's text is shown
        again, in the same message: editing it here could race that edit.)"""
        if answer.verdict is FormVerdict.SUBMITTED:
            return
        if answer.verdict is FormVerdict.EXPIRED or answer.elsewhere:
            await self._drop_buttons(body, answer.notice)
        await self._tell(body, answer.notice)

    async def _drop_buttons(self, body: dict[str, Any], notice: str) -> None:
        channel = str((body.get("channel") or {}).get("id") or "")
        message = body.get("message") or {}
        blocks = [b for b in message.get("blocks") or () if b.get("block_id") != FORM_BLOCK]
        if not channel or not message.get("ts") or not message.get("blocks"):
            return
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": notice}]})
        try:
            await self._answers.client.chat_update(
                channel=channel, ts=str(message["ts"]), blocks=blocks, text=notice
            )
        except SlackApiError as exc:
            log.info("could not remove a form's buttons: %s", slack_error(exc))

    async def _tell(self, body: dict[str, Any], text: str) -> None:
        channel = (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        thread = (body.get("message") or {}).get("thread_ts")
        if not channel or not user or not text:
            return
        try:
            await self._answers.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread, text=text
            )
        except SlackApiError as exc:
            log.info("could not post an ephemeral note: %s", slack_error(exc))

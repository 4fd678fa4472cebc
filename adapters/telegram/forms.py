"""A Dify form's inline button pressed: the core answers the form, the press is answered
(``answerCallbackQuery``, seen by the presser only) and the form's message shows what became of it.

    press form:<ref>:<n> ─► Inbox.answer_form ─► submitted: "✓ Approve"; the run goes on in the
                                                  form's own messages (``TelegramReply``)
                          asking (fields): the buttons go, a message asks the first field
                                  (ForceReply in a group, so the reply comes back to the bot)
                          expired / forgotten / answered in Dify: one inert button says so
                          not allowed / invalid / failed / already: told to the presser only
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.telegram.api import TelegramError
from adapters.telegram.formatting import escape
from adapters.telegram.inbound import Update
from adapters.telegram.keyboard import Action, Keyboard, closed_keyboard
from adapters.telegram.reply import Place, ReplyKit, send_message
from bot.contract import FormAnswer, FormVerdict, FormView, Inbox

log = logging.getLogger(__name__)

AnswerPress = Callable[..., Awaitable[None]]  # (update, text, *, alert=False)
_TOLD_LOUDLY = (FormVerdict.INVALID, FormVerdict.FAILED)  # an alert box, not a passing toast
_CLOSED = (FormVerdict.EXPIRED, FormVerdict.UNKNOWN)


class FormPresses:
    """Answers the presses on forms' buttons, on whichever replica gets them."""

    def __init__(self, inbox: Inbox, kit: ReplyKit, answer_press: AnswerPress) -> None:
        self._inbox, self._kit, self._answer_press = inbox, kit, answer_press

    async def pressed(self, update: Update, action: Action) -> None:
        view = await self._inbox.form(action.ref)
        actions = view.form.actions if view is not None else ()
        if view is None or action.slot >= len(actions):  # forgotten long ago
            notice = self._inbox.text("form_expired", update.locale)
            await self._answer_press(update, notice)
            await self._set_buttons(update, closed_keyboard(notice))
            return
        chosen = actions[action.slot]
        answer = await self._inbox.answer_form(
            action.ref, action=chosen.id, inputs={}, user=str(update.user_id),
            locale=update.locale,
        )  # fmt: skip
        log.info("Telegram form press: %s", answer.verdict.value)
        await self._told(update, answer, chosen.title or chosen.id, view)

    async def _told(self, update: Update, answer: FormAnswer, title: str, view: FormView) -> None:
        verdict = answer.verdict
        if verdict in (FormVerdict.SUBMITTED, FormVerdict.ASKING):
            await self._answer_press(update, f"✓ {title}")
        else:
            await self._answer_press(update, answer.notice, alert=verdict in _TOLD_LOUDLY)
        if verdict is FormVerdict.ASKING:  # the action is chosen: the fields come as messages
            await self._set_buttons(update, None)
            await self._ask(update, answer.notice, view)
        elif verdict in _CLOSED or answer.elsewhere:
            await self._set_buttons(update, closed_keyboard(answer.notice))
        # Submitted here (now or by an earlier press): the run's reply takes the buttons away
        # and edits the message; touching it here could race those edits.

    async def _ask(self, update: Update, notice: str, view: FormView) -> None:
        """The first field's question. In a group it mentions the presser and forces a reply
        (selective: their client alone opens the reply), which the bot always receives; the
        question joins the form's reply chain, so the answer lands in its conversation."""
        group = update.in_group
        place = Place(update.chat_id, group, update.thread_id,
                      update.message_id if group else None)  # fmt: skip
        html, markup = escape(notice), None
        if group:
            name = escape(update.user_name or str(update.user_id))
            html = f'<a href="tg://user?id={update.user_id}">{name}</a> {html}'
            placeholder = view.form.fields[0].name[:64] if view.form.fields else None
            markup = {"force_reply": True, "selective": True,
                      "input_field_placeholder": placeholder}  # fmt: skip
        try:
            sent = await send_message(self._kit, place, html, markup=markup)
        except TelegramError as exc:
            log.warning("a form's question refused in chat %s: %s", update.chat_id, exc.message)
            return
        memory, asked = self._kit.memory, int((sent or {}).get("message_id") or 0)
        root = await memory.root(update.chat_id, update.message_id) if group else None
        if asked and root is not None:
            await memory.remember_root(update.chat_id, asked, root)

    async def _set_buttons(self, update: Update, markup: Keyboard | None) -> None:
        """The pressed message's keyboard replaced (None: taken away)."""
        params: dict[str, Any] = {"chat_id": update.chat_id, "message_id": update.message_id,
                                  "reply_markup": markup}  # fmt: skip
        api = self._kit.api

        async def call() -> Any:
            return await api.call("editMessageReplyMarkup", params)

        try:
            await self._kit.pacer.send(update.chat_id, call, group=update.in_group)
        except TelegramError as exc:  # "message is not modified": already so
            log.info("a form's buttons not changed in chat %s: %s", update.chat_id, exc.message)

"""The DingTalk robot: callbacks by HTTP (``POST /dingtalk``) or Stream mode, into the journal;
replies built from the journal entry (AI card or robot messages).

HTTP callbacks are signed (docs "机器人接收消息 · 验证签名"): headers ``timestamp`` (ms) and
``sign`` = base64(HMAC-SHA256(key = app secret, message = timestamp + "\\n" + app secret)). The
check needs no body, so it runs before the body is read; a timestamp more than an hour off is
refused. The signature does not cover the body, which is why the reply never trusts the body's
``sessionWebhook`` beyond ``DINGTALK_OAPI_BASE``. DingTalk may deliver a message twice (a retry
after a slow answer, Stream mode and a replica's second look): the journal answers each
``msgId`` once, on any replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from adapters.dingtalk.api import DingTalkAPI
from adapters.dingtalk.inbound import (
    PLATFORM,
    RobotMessage,
    to_card_action,
    to_incoming,
    to_robot_message,
    to_where,
)
from adapters.dingtalk.offers import (
    OFFER_TTL,
    Choice,
    Offers,
    find_choice,
    find_offer,
    to_card_choice,
)
from adapters.dingtalk.reply import (
    CardReply,
    Chat,
    FormCardReply,
    MessageReply,
    RobotMessages,
    closed_form_data,
    update_card,
)
from adapters.dingtalk.stream import StreamClient
from adapters.webhooks import guard_of
from bot.contract import Delivery, FormVerdict, Inbox, Reply
from bot.errors import CallbackRejected, ShuttingDown
from bot.models import IncomingMessage
from bot.ops.effort import best_effort
from bot.stores import ReplyStates

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # a robot callback is a few KB
SIGN_WINDOW = 3600.0  # seconds either way (DingTalk: "timestamp 与当前时间相差 1 小时内")


def sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkAdapter:
    """Takes robot messages from either transport and builds their replies."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        api: DingTalkAPI,
        *,
        states: ReplyStates,
        secret: str,
        locale: str,
        per_user: bool,
        template_id: str = "",
        content_key: str = "content",
        stream: StreamClient | None = None,
        feedback: bool = False,
        buttons: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.api = api
        self._secret = secret
        self._locale = locale
        self._per_user = per_user
        self._template_id = template_id
        self._content_key = content_key
        self.stream = stream
        self.states = states
        self._feedback = feedback
        self._buttons = buttons and bool(template_id) and stream is not None
        self._clock = clock

    def add_routes(self, app: web.Application, path: str = "/dingtalk") -> None:
        route = guard_of(app).route(self.receive, max_body=MAX_BODY, precheck=self._precheck)
        app.router.add_post(path, route)

    async def start(self) -> None:
        if self.stream is not None:
            await self.stream.start(self.take, self.take_action if self._buttons else None)

    async def stop(self) -> None:
        if self.stream is not None:
            await self.stream.stop()

    async def close(self) -> None:
        await self.api.aclose()

    # ---- inbound ---------------------------------------------------------------------------

    def _precheck(self, request: web.Request) -> None:
        """The signature and its timestamp, from the headers alone (before the body)."""
        stamp, given = request.headers.get("timestamp", ""), request.headers.get("sign", "")
        if not stamp or not given:
            raise CallbackRejected("callback without timestamp or sign", status=401)
        if not stamp.isdigit() or abs(int(stamp) / 1000 - self._clock()) > SIGN_WINDOW:
            raise CallbackRejected("callback timestamp outside the hour", status=403)
        if not hmac.compare_digest(given.encode(), sign(self._secret, stamp).encode()):
            raise CallbackRejected("callback sign does not match", status=403)

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise CallbackRejected("callback body is not JSON", status=400) from None
        try:
            await self.take(payload)
        except ShuttingDown:  # DingTalk retries; another replica takes it
            return web.Response(status=503)
        return web.json_response({})

    async def take(self, payload: Any) -> None:
        """Record one robot message (CallbackRejected when malformed); the core answers it."""
        robot = to_robot_message(payload)
        message = to_incoming(robot, per_user=self._per_user, locale=self._locale)
        where = to_where(robot)
        choice = await self._choice(message)
        if choice is not None and choice.kind == "ask":
            message = replace(message, text=choice.value)  # "2": the second suggested question
        rating = choice if choice is not None and choice.kind != "ask" else None
        answerable = bool(message.text or message.attachments) and rating is None
        accepted = await self.inbox.accept(message, where=where, answer=answerable)
        if not accepted.new:
            return
        messages = RobotMessages(self.api, Chat.of(where), clock=self._clock)
        if rating is not None and rating.kind == "form":  # "1": a form shown without its card
            await self._press(rating, robot, "", where=where)
        elif rating is not None:
            await self._rate(rating, messages)
        elif not answerable:
            await self._not_a_question(robot.kind, message, messages)

    async def _not_a_question(
        self, kind: str, message: IncomingMessage, messages: RobotMessages
    ) -> None:
        """A bare @mention gets the app's opening statement; a kind difybot cannot read (or a
        voice message DingTalk did not transcribe), a line saying so."""
        with best_effort("answer a message without a question", log):
            if kind in ("text", "richText"):
                facts = await self.inbox.facts(
                    PLATFORM, workspace=message.workspace, channel=message.channel_id or ""
                )
                if facts.opening_statement:
                    await messages.text(facts.opening_statement)
                return
            await messages.text(self.inbox.text("dingtalk_unsupported", self._locale))

    async def take_action(self, payload: Any, message_id: str) -> None:
        """A card button: ask a suggested question, rate the card's answer, or take a Dify
        form's action. The click is a journal entry of its own (``card:<messageId>``), so a
        callback DingTalk delivers again is handled once."""
        action = to_card_action(payload)
        question = action.params.get("question", "") if action.action == "ask" else ""
        robot = action.to_robot_message(f"card:{message_id}", question)
        message = to_incoming(robot, per_user=self._per_user, locale=self._locale)
        offer = await find_offer(self.states, message.key.place,
                                 action.params.get("message_id", ""),
                                 since=self._clock() - OFFER_TTL)  # fmt: skip
        choice = to_card_choice(action.action, action.params, offer)
        if choice is None:
            raise CallbackRejected(f"card action {action.action!r} not understood", status=400)
        asks = choice.kind == "ask"
        accepted = await self.inbox.accept(message, where=to_where(robot), answer=asks)
        if not accepted.new or asks:
            return
        if choice.kind == "form":
            await self._press(choice, robot, action.out_track_id)
            return
        messages = RobotMessages(self.api, Chat.of(to_where(robot)), clock=self._clock)
        await self._rate(choice, messages)

    async def _press(
        self,
        choice: Choice,
        robot: RobotMessage,
        card: str,
        *,
        where: dict[str, Any] | None = None,
    ) -> None:
        """A Dify form's action, by its card's button (``card``: the card to change) or by a
        number replied to a form shown as messages (``where``: the run goes on in a reply of
        its own, since messages cannot be edited). Submitted: the run goes on in the same card,
        whose reply takes the buttons off (``FormCardReply._stream``); the choice is the note
        (a run that pauses again before that one update lands shows it under its next form).
        Expired, forgotten, answered outside difybot, or a form with fields (the chat is asked
        the first one): the buttons go here, the reason or the choice the note. Refused values,
        a failure, someone who may not answer, a press after another one: the notice goes to
        the presser alone (a robot message in their single chat)."""
        view = await self.inbox.form(choice.ref)
        answer = await self.inbox.answer_form(
            choice.ref, action=choice.value, inputs={}, user=robot.sender_id,
            locale=self._locale, where=where,
        )  # fmt: skip
        verdict = answer.verdict
        note = answer.notice
        if view is not None and verdict in (FormVerdict.SUBMITTED, FormVerdict.ASKING):
            title = next((a.title for a in view.form.actions if a.id == choice.value), "")
            filled = self.inbox.text("form_filled", self._locale)
            note = filled.format(title=view.form.node_title, action=title or choice.value)
        # No run goes on in the card after these: nothing else changes it now.
        closes = verdict in (FormVerdict.EXPIRED, FormVerdict.UNKNOWN, FormVerdict.ASKING)
        if card and (closes or (verdict is FormVerdict.ALREADY and answer.elsewhere)):
            with best_effort("take a form's buttons off its card", log):
                await update_card(self.api, card, closed_form_data(note))
        elif card and verdict is FormVerdict.SUBMITTED:  # the choice, under the form's text
            with best_effort("note a form's choice on its card", log):
                await update_card(self.api, card, {"form_note": note})
        if verdict is FormVerdict.SUBMITTED or not answer.notice:
            return
        chat = Chat.of(to_where(robot))
        if verdict is not FormVerdict.ASKING and robot.staff_id:  # to the presser alone
            chat = Chat(group=False, conversation_id="", staff_id=robot.staff_id,
                        session_webhook="", session_expires=0.0)  # fmt: skip
        messages = RobotMessages(self.api, chat, clock=self._clock)
        with best_effort("tell a form's presser its verdict", log):
            await messages.text(answer.notice)

    async def _choice(self, message: IncomingMessage) -> Choice | None:
        if message.attachments or not message.text:
            return None
        since = self._clock() - OFFER_TTL
        return await find_choice(self.states, message.key.place, message.text, since=since)

    async def _rate(self, choice: Choice, messages: RobotMessages) -> None:
        with best_effort("send feedback to Dify", log):
            await self.inbox.feedback(
                choice.app, choice.message_id, user=choice.dify_user, rating=choice.value
            )
            await messages.text(self.inbox.text("dingtalk_feedback_thanks", self._locale))

    # ---- replies ---------------------------------------------------------------------------

    def reply(self, delivery: Delivery) -> Reply:
        """``bot.contract.Platform.reply``: the same card or messages, on whichever replica."""
        chat = Chat.of(delivery.where)
        locale = delivery.message.locale or self._locale
        messages = RobotMessages(self.api, chat, clock=self._clock)
        state = dict(delivery.state or {})  # the card's and the messages' one state
        fallback = MessageReply(
            messages,
            delivery.save,
            state=state,
            thinking=self.inbox.text("dingtalk_thinking", locale),
            title=self.inbox.text("dingtalk_title", locale),
            offers=Offers(
                self.inbox.suggestions,
                feedback=self._feedback,
                heading=self.inbox.text("dingtalk_suggested", locale),
                rate_line=self.inbox.text("dingtalk_feedback", locale),
            ),
            choose=self.inbox.text("form_choose", locale),
        )
        if not self._template_id or not chat.open_space:
            return fallback
        kind = FormCardReply if self._buttons else CardReply
        return kind(
            self.api,
            chat,
            fallback,
            delivery.save,
            state=state,
            template_id=self._template_id,
            content_key=self._content_key,
            buttons=self._buttons,
        )

"""LINE's webhook at ``POST /line``: signed bodies, answered 200 at once, worked on after.

``X-Line-Signature`` is base64(HMAC-SHA256(channel secret, raw body)); a missing or wrong one is
refused before the body is parsed, and nothing in it is processed. Each event is recorded in the
journal under its ``webhookEventId`` before the 200 goes back, so LINE's redelivery of an event
(same id, ``deliveryContext.isRedelivery``) is answered once, on whichever replica it lands.
A body holds several events; each is handled on its own (one bad event refuses the body: LINE's
own bodies are never malformed, so a malformed one is not LINE's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from adapters.background import Background
from adapters.line.api import LineAPI, LineAPIError
from adapters.line.inbound import (
    PLATFORM,
    Ask,
    FormChoice,
    LineEvent,
    Rate,
    asked,
    to_action,
    to_events,
    to_incoming,
)
from adapters.line.messages import Button, Message, form_buttons, with_quick_reply
from adapters.line.reply import Labels, LineReply, Progress, ReplyOptions, Target
from adapters.webhooks import guard_of
from bot.contract import Delivery, FormVerdict, Inbox
from bot.errors import CallbackRejected, DifyError, ShuttingDown
from bot.models import IncomingMessage
from bot.ops.effort import best_effort

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # LINE batches events; a body is a few KB
# A form tapped with these verdicts stays open: its notice offers the buttons again.
_STILL_OPEN = frozenset({FormVerdict.INVALID, FormVerdict.FAILED, FormVerdict.NOT_ALLOWED})
# ... and these notices are worth a push when the tap's reply token is refused.
_NEEDED = frozenset({FormVerdict.INVALID, FormVerdict.FAILED, FormVerdict.ASKING})


def signature_of(secret: bytes, body: bytes) -> bytes:
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())


class LineAdapter:
    """Verifies, records and answers webhook events; builds each answer's ``LineReply``."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        *,
        api: LineAPI,
        secret: str,
        options: ReplyOptions,
        per_user: bool = False,
        locale: str = "ja",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.api = api
        self._secret = secret.encode()
        self.options = options
        self._per_user = per_user
        self._locale = locale
        self._clock = clock
        self._background = Background()

    def add_routes(self, app: web.Application, path: str = "/line") -> None:
        route = guard_of(app).route(self.receive, max_body=MAX_BODY, precheck=_signed)
        app.router.add_post(path, route)

    async def start(self) -> None:
        """Nothing to open: LINE calls us."""

    async def stop(self) -> None:
        """Nothing to stop: LINE calls us (the web listener stops taking callbacks)."""

    async def close(self) -> None:
        await self._background.close()
        await self.api.http.aclose()

    # ---- inbound ----------------------------------------------------------------------------

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        given = request.headers.get("X-Line-Signature", "").encode()
        if not hmac.compare_digest(given, signature_of(self._secret, body)):
            raise CallbackRejected("LINE webhook with a wrong signature", status=401)
        try:
            bot, events = to_events(orjson.loads(body))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise CallbackRejected(f"LINE webhook body refused: {exc}", status=400) from None
        arrived = self._clock()
        try:
            for event in events:
                await self._handle(event, bot=bot, arrived=arrived)
        except ShuttingDown:  # LINE redelivers (when redelivery is on) to another replica
            return web.Response(status=503)
        return web.Response(status=200)

    async def _handle(self, event: LineEvent, *, bot: str, arrived: float) -> None:
        # The reply token ages from the event, not from this delivery of it (a redelivery
        # comes late); a clock ahead of LINE's only makes the reply window shorter.
        if event.timestamp_ms:
            arrived = min(arrived, event.timestamp_ms / 1000)
        where = {"chat": event.chat.id, "kind": event.chat.kind, "arrived": arrived,
                 "reply_token": event.reply_token}  # fmt: skip
        if event.kind == "message":
            message = to_incoming(event, bot=bot, per_user=self._per_user, locale=self._locale)
            if message is not None:
                await self.inbox.accept(message, where=where)
        elif event.kind == "postback":
            await self._postback(event, bot=bot, where=where)
        elif event.kind == "follow" and event.reply_token:
            await self._greet(event, bot=bot, where=where)

    async def _greet(self, event: LineEvent, *, bot: str, where: dict[str, Any]) -> None:
        """A new friend gets the app's opening statement, its starter questions as quick
        replies (LINE's own greeting message should be off: README). Recorded first, so a
        redelivered follow greets once."""
        record = asked(event, "", bot=bot, per_user=self._per_user, locale=self._locale)
        if (await self.inbox.accept(record, where=where, answer=False)).new:
            self._background.spawn(self._send_greeting(bot, event.reply_token))

    async def _send_greeting(self, bot: str, reply_token: str) -> None:
        facts = None
        with best_effort("read the app's opening statement", log):
            facts = await self.inbox.facts(PLATFORM, workspace=bot)
        if facts is None or not facts.opening_statement:
            return
        buttons = [Button(q, Ask(q)) for q in facts.starter_questions if q.strip()]
        message = with_quick_reply({"type": "text", "text": facts.opening_statement}, buttons)
        try:
            await self.api.reply(reply_token, [message])
        except LineAPIError as exc:  # a late greeting is not worth a billed push
            log.info("greeting not sent: %s", exc.message)

    async def _postback(self, event: LineEvent, *, bot: str, where: dict[str, Any]) -> None:
        """A quick reply: ask its question, rate an answer or answer a form (recorded first,
        so a redelivered tap rates or answers once)."""
        action = to_action(event.postback)
        if action is None:
            return
        question = action.question if isinstance(action, Ask) else ""
        message = asked(event, question, bot=bot, per_user=self._per_user, locale=self._locale)
        accepted = await self.inbox.accept(message, where=where, answer=isinstance(action, Ask))
        if not accepted.new:
            return
        if isinstance(action, Rate):
            self._background.spawn(self._rate(action, message, event.reply_token))
        elif isinstance(action, FormChoice):
            self._background.spawn(self._answer_form(action, event, where))

    async def _rate(self, action: Rate, message: IncomingMessage, reply_token: str) -> None:
        try:
            user = action.user or message.dify_user  # the one the answer was given to
            await self.inbox.feedback(
                action.app, action.message_id, user=user, rating=action.rating
            )
        except DifyError as exc:
            log.warning("Dify refused feedback: %s", exc)
            return
        thanks = self.inbox.text("line_feedback_thanks", self._locale)
        with best_effort("thank for the feedback", log, level=logging.INFO):
            try:
                await self.api.reply(reply_token, [{"type": "text", "text": thanks}])
            except LineAPIError as exc:  # a stale tap: its token is spent; no push for thanks
                log.info("feedback thanks not sent: %s", exc.message)

    async def _answer_form(
        self, choice: FormChoice, event: LineEvent, where: dict[str, Any]
    ) -> None:
        """A form's quick reply, answered by the core as whoever tapped it. Submitted, the run
        goes on in a new message by this tap's reply token (``where``: LINE cannot edit the
        form's). Otherwise one line says why, by that token: a form still open shows its
        buttons again (the tap hid them), one with fields asks the first (the next messages
        answer them)."""
        answer = await self.inbox.answer_form(
            choice.ref, action=choice.action, inputs={}, user=event.chat.user,
            locale=self._locale, where=where,
        )  # fmt: skip
        if answer.verdict is FormVerdict.SUBMITTED or not answer.notice:
            return
        buttons: list[Button] = []
        if answer.verdict in _STILL_OPEN and (view := await self.inbox.form(choice.ref)):
            buttons = form_buttons(view)
        notice = with_quick_reply({"type": "text", "text": answer.notice}, buttons)
        await self._tell(event, notice, needed=answer.verdict in _NEEDED)

    async def _tell(self, event: LineEvent, message: Message, *, needed: bool) -> None:
        """A notice by the event's reply token; one the form needs (a field's question, a form
        to answer again) is pushed if LINE refuses the token (it is a minute old)."""
        try:
            await self.api.reply(event.reply_token, [message])
            return
        except LineAPIError as exc:
            log.info("form notice not replied: %s", exc.message)
        if needed:
            with best_effort("push a form notice", log):
                await self.api.push(event.chat.id, [message], retry_key=str(uuid.uuid4()))

    # ---- outbound ---------------------------------------------------------------------------

    def reply(self, delivery: Delivery) -> LineReply:
        """``bot.contract.Platform.reply``: the answer to the chat that asked (a replica that
        takes the entry over continues from its saved progress)."""
        locale = delivery.message.locale or self._locale
        labels = Labels(
            like=self.inbox.text("line_like", locale),
            dislike=self.inbox.text("line_dislike", locale),
            cut=self.inbox.text("line_cut", locale),
        )
        return LineReply(
            api=self.api,
            target=Target.of(delivery.where),
            save=delivery.save,
            labels=labels,
            background=self._background,
            options=self.options,
            progress=Progress.of(delivery.state),
            suggest=self.inbox.suggestions,
            clock=self._clock,
        )


def _signed(request: web.Request) -> None:
    """Cheap check before the body is read: LINE signs every request."""
    if not request.headers.get("X-Line-Signature"):
        raise CallbackRejected("LINE webhook without X-Line-Signature", status=401)

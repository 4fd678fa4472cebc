"""Feishu events in (``POST /feishu/events`` or the long connection), answers out.

Facts used (open.feishu.cn, "接收事件", "事件订阅概述", "处理卡片回调"): a callback is the v2
envelope ``{"schema": "2.0", "header": {"event_id", "token", "event_type", "tenant_key"…},
"event"}``, encrypted as ``{"encrypt"}`` when the app has an Encrypt Key and then signed
(crypto.py); ``url_verification`` (``{"challenge", "token", "type"}``) must echo the challenge
within a second, encrypted or not. Feishu retries a callback not answered 200 within 3 s with
the same ``event_id``, for hours: a message is recorded in the journal (deduplicated by its
message id) before the 200, and answered once, on any replica. lark-oapi's dispatcher answers
500 to a bad token or signature; here it is 403 / 401, and nothing is processed.

In a p2p chat every message is answered. In a group only a message that @mentions the bot,
answered in a thread under it (``reply_in_thread``); the thread is then followed (shared by
replicas) and its later messages are answered without a mention. Other group chatter is ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import web

from adapters.feishu.actions import Ask, Feedback, Form, Pressed, Stop, ask_value, to_pressed
from adapters.feishu.api import FeishuAPI, FeishuAPIError
from adapters.feishu.cards import Button, card, form_card
from adapters.feishu.crypto import decrypt, is_signed
from adapters.feishu.inbound import PLATFORM, mentions_bot, to_incoming, to_received
from adapters.feishu.markdown import to_card_markdown
from adapters.feishu.reply import CardKitSwitch, FeishuReply, Labels, Place
from adapters.webhooks import guard_of
from bot.contract import Delivery, FormVerdict, FormView, Inbox
from bot.errors import CallbackRejected, DifyError, ShuttingDown
from bot.files.answers import AnswerFiles
from bot.models import ConversationKey, IncomingMessage, Scope
from bot.stores import FollowedThreads, SeenCallbacks

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # a message event is a few KB
TIMESTAMP_WINDOW = 300.0  # seconds a signed callback's timestamp may be off
FORM_WAIT = 2.5  # seconds a form's press waits for its verdict (Feishu gives a callback 3)


class FeishuAdapter:
    """Verifies callbacks, turns them into messages and card actions, builds replies."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        api: FeishuAPI,
        *,
        threads: FollowedThreads,
        callbacks: SeenCallbacks,
        verification_token: str = "",
        encrypt_key: str = "",
        locale: str = "zh",
        per_chat: bool = False,
        thread_ttl: float = 72 * 3600.0,
        cardkit: CardKitSwitch | None = None,
        feedback: bool = True,
        answer_files: AnswerFiles | None = None,
        grace: float = 25.0,
        wall: Any = time.time,
    ) -> None:
        self.inbox = inbox
        self.api = api
        self._threads = threads
        self._callbacks = callbacks
        self._token = verification_token
        self._encrypt_key = encrypt_key
        self._locale = locale
        self._per_chat = per_chat
        self._thread_ttl = thread_ttl
        self.cardkit = cardkit or CardKitSwitch(True)
        self._feedback = feedback
        self._answer_files = answer_files
        self._grace = grace
        self._wall = wall
        self.bot_open_id = ""
        self.connection: Any = None  # the long connection (ws.py), when that is the mode
        self.running: set[asyncio.Task[Any]] = set()
        self.form_wait = FORM_WAIT

    # ---- lifecycle ----------------------------------------------------------------------------

    def add_routes(self, app: web.Application, path: str = "/feishu/events") -> None:
        route = guard_of(app).route(self.receive, max_body=MAX_BODY, precheck=self._precheck)
        app.router.add_post(path, route)

    async def start(self) -> None:
        await self._learn_bot()
        if self.connection is not None:
            await self.connection.start()

    async def stop(self) -> None:
        """No more events (the answers in flight keep the API client: see ``close``)."""
        if self.connection is not None:
            await self.connection.stop()

    async def close(self) -> None:
        """The core has finished the answers in flight (or left them to a replica): the
        button tasks started here get the same grace, then the client is closed."""
        if self.running:
            await asyncio.wait(set(self.running), timeout=self._grace)
        await self.api.http.aclose()

    async def _learn_bot(self) -> str:
        """The bot's own open_id (``GET /bot/v3/info``): how a mention of it is recognised."""
        if not self.bot_open_id:
            try:
                self.bot_open_id = str((await self.api.bot_info()).get("open_id") or "")
            except FeishuAPIError as exc:
                log.error("Feishu bot info unavailable (%s): group mentions wait for it", exc)
        return self.bot_open_id

    # ---- the webhook --------------------------------------------------------------------------

    def _precheck(self, request: web.Request) -> None:
        stamp = request.headers.get("X-Lark-Request-Timestamp")
        if not self._encrypt_key or stamp is None:
            return
        if not stamp.isdigit() or abs(self._wall() - int(stamp)) > TIMESTAMP_WINDOW:
            raise CallbackRejected("stale or malformed X-Lark-Request-Timestamp", status=401)

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        payload = _json(body)
        sealed = "encrypt" in payload
        if sealed:
            if not self._encrypt_key:
                raise CallbackRejected("encrypted callback, but FEISHU_ENCRYPT_KEY is unset")
            payload = _json(decrypt(self._encrypt_key, str(payload["encrypt"])))
        if payload.get("type") == "url_verification":  # encrypted or not (the key may be
            self._check_token(payload.get("token"))  # set here before it is on Feishu's page)
            return web.json_response({"challenge": str(payload.get("challenge") or "")})
        if self._encrypt_key and not sealed:
            raise CallbackRejected("plain callback although FEISHU_ENCRYPT_KEY is set")
        if self._encrypt_key:
            self._check_signature(request, body)
        self._check_token(_section(payload, "header").get("token", payload.get("token")))
        try:
            answer = await self.handle(payload)
        except ShuttingDown:  # not recorded: Feishu retries, another replica answers
            return web.Response(status=503, text="")
        return web.json_response(answer or {})

    def _check_signature(self, request: web.Request, body: bytes) -> None:
        headers = request.headers
        signed = is_signed(headers.get("X-Lark-Signature", ""), body=body,
                           timestamp=headers.get("X-Lark-Request-Timestamp", ""),
                           nonce=headers.get("X-Lark-Request-Nonce", ""),
                           encrypt_key=self._encrypt_key)  # fmt: skip
        if not signed:
            raise CallbackRejected("bad X-Lark-Signature", status=401)

    def _check_token(self, token: Any) -> None:
        if not self._token or not isinstance(token, str) or not _same(token, self._token):
            raise CallbackRejected("bad verification token", status=403)

    # ---- events, from either door -------------------------------------------------------------

    async def handle(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """One authenticated event; the callback's answer (a card action's toast), if any."""
        event_type = _section(payload, "header").get("event_type")
        if payload.get("schema") != "2.0":
            log.info("Feishu 1.0 callback ignored: subscribe to im.message.receive_v1 (2.0)")
            return None
        if event_type == "im.message.receive_v1":
            await self._on_message(payload)
        elif event_type == "card.action.trigger":
            return await self._on_action(payload)
        elif event_type == "im.chat.access_event.bot_p2p_chat_entered_v1":
            self._later(self._greet(payload))
        return None

    async def _on_message(self, payload: dict[str, Any]) -> None:
        bot = await self._learn_bot()
        received = to_received(payload, bot_open_id=bot)
        if received.sender_type != "user":
            return  # another bot, or our own
        owner = ""
        if received.in_group:
            mentioned = mentions_bot(received, bot)
            if not mentioned and not received.root_id:
                return  # group chatter, not for the bot
            thread = f"{received.tenant}/{received.thread_root}"
            if mentioned:  # the first mention's author stays the thread's owner
                await self._threads.follow(thread, received.sender, ttl=self._thread_ttl)
            owner = await self._threads.owner(thread) or ""
            if not owner:
                return  # a thread the bot does not follow
        message, where = to_incoming(
            received, locale=self._locale, per_chat=self._per_chat, owner=owner
        )
        if message.text or message.attachments:
            await self._accept(message, where)

    async def _accept(self, message: IncomingMessage, where: dict[str, Any]) -> None:
        accepted = await self.inbox.accept(message, where=where)
        if accepted.answer is not None:
            self._track(accepted.answer)

    async def _on_action(self, payload: dict[str, Any]) -> dict[str, Any]:
        pressed = to_pressed(payload)
        if pressed is None:
            return {}
        if pressed.event_id and not await self._callbacks.first_time(PLATFORM, pressed.event_id):
            return {}  # a redelivered press
        action = pressed.action
        if isinstance(action, Stop):
            self._later(self._stop(action))
            return _toast(self.inbox.text("feishu_stopping", self._locale))
        if isinstance(action, Feedback):
            self._later(self._rate(action))
            return _toast(self.inbox.text("feishu_feedback_thanks", self._locale), "success")
        if isinstance(action, Ask):
            await self._ask(action, pressed)
            return _toast(self.inbox.text("feishu_asking", self._locale))
        assert isinstance(action, Form)
        return await self._answer_form(action, pressed)

    async def _stop(self, action: Stop) -> None:
        try:
            if not await self.inbox.stop(action.key):
                log.info("stop pressed, but no answer of %s runs here", action.key.place)
        except DifyError as exc:
            log.warning("Dify refused to stop: %s", exc)

    async def _rate(self, action: Feedback) -> None:
        try:
            await self.inbox.feedback(action.app, action.message_id, user=action.dify_user,
                                      rating=action.rating)  # fmt: skip
        except DifyError as exc:
            log.warning("Dify refused feedback: %s", exc)

    async def _ask(self, action: Ask, pressed: Pressed) -> None:
        """A suggested question, asked by whoever pressed it, where the card is."""
        key = action.key
        owner = pressed.operator
        if key.scope is Scope.THREAD:  # a thread's conversation is its owner's in Dify
            owner = await self._threads.owner(f"{key.workspace}/{key.scope_id}") or owner
        message = IncomingMessage(
            platform=PLATFORM, workspace=key.workspace, user_id=owner,
            text=action.question, key=key, message_id=f"ask:{pressed.event_id}",
            locale=self._locale, channel_id=pressed.chat_id,
            author_id=pressed.operator if owner != pressed.operator else "",
        )  # fmt: skip
        where = {"chat_id": pressed.chat_id, "reply_to": pressed.message_id,
                 "in_thread": key.scope is Scope.THREAD, "user": pressed.operator}  # fmt: skip
        await self._accept(message, where)

    async def _answer_form(self, action: Form, pressed: Pressed) -> dict[str, Any]:
        """A Dify form's button: the core answers it, and its verdict is the toast (only the
        presser sees it). Feishu wants the callback answered within 3 s: a verdict slower than
        ``form_wait`` gets a "sending" toast now, and its notice comes as a message later."""
        late = asyncio.Event()
        judging = asyncio.create_task(self._judge(action, pressed, late))
        self._track(judging)
        try:
            return await asyncio.wait_for(asyncio.shield(judging), self.form_wait)
        except TimeoutError:
            if judging.done():  # finished as the wait ran out: its toast is still good
                return judging.result()
            late.set()
            judging.add_done_callback(_report_late)
            return _toast(self.inbox.text("feishu_form_sending", self._locale))

    async def _judge(self, action: Form, pressed: Pressed, late: asyncio.Event) -> dict[str, Any]:
        view = await self.inbox.form(action.ref)
        answer = await self.inbox.answer_form(
            action.ref, action=action.action, inputs=action.values, user=pressed.operator,
            locale=self._locale,
        )  # fmt: skip
        verdict = answer.verdict
        chosen = ""
        if view is not None:
            title = next((a.title for a in view.form.actions if a.id == action.action), "")
            filled = self.inbox.text("form_filled", self._locale)
            chosen = filled.format(title=view.form.node_title, action=title or action.action)
        if view is not None and (answer.closed or verdict is FormVerdict.ASKING):
            note = chosen if verdict in (FormVerdict.SUBMITTED, FormVerdict.ASKING) else ""
            self._later(self._close_form(view, pressed, action, note or answer.notice))
        if verdict is FormVerdict.SUBMITTED:
            return _toast(chosen or answer.notice, "success")
        if verdict is FormVerdict.ASKING or late.is_set():  # the fields are asked there
            self._later(self._say(answer.notice, pressed, action))
        return _toast(answer.notice, _TOAST_OF.get(verdict, "warning"))

    async def _close_form(self, view: FormView, pressed: Pressed, action: Form,
                          note: str) -> None:  # fmt: skip
        """The form's card without inputs or buttons, ``note`` under its text."""
        closed = form_card(view, thread=action.thread, note=note)
        try:
            await self.api.patch(pressed.message_id, closed)
        except FeishuAPIError as exc:
            log.warning("form card %s not greyed: %s", pressed.message_id, exc)

    async def _say(self, notice: str, pressed: Pressed, action: Form) -> None:
        """A verdict's notice as a message where the form is: a field's question (the next
        message answers it), or why a press that was not told in time did not count."""
        asked = card(to_card_markdown(notice))
        uuid = f"ask-{pressed.event_id}"[:50]
        if action.thread:
            await self.api.reply(pressed.message_id, "interactive", asked, in_thread=True,
                                 uuid=uuid)  # fmt: skip
        else:
            await self.api.send(pressed.chat_id, "interactive", asked, uuid=uuid)

    async def _greet(self, payload: dict[str, Any]) -> None:
        """Someone opened a p2p chat with the bot that has no message yet: the app's opening
        statement, its starter questions as buttons. Sent with a uuid per chat, so replicas
        and repeated opens within the hour greet once."""
        event, tenant = (
            _section(payload, "event"),
            str(_section(payload, "header").get("tenant_key") or ""),
        )
        chat_id = str(event.get("chat_id") or "")
        user = str(_section(event, "operator_id").get("open_id") or "")
        if not chat_id or not user or event.get("last_message_id"):
            return
        facts = await self.inbox.facts(PLATFORM, workspace=tenant, channel=chat_id)
        if not facts.opening_statement:
            return
        scope, scope_id = (Scope.CHANNEL, chat_id) if self._per_chat else (Scope.USER, user)
        key = ConversationKey(PLATFORM, tenant, scope, scope_id)
        asks = [Button(q, ask_value(q, key)) for q in facts.starter_questions[:3]]
        label = self.inbox.text("feishu_suggested", self._locale)
        greeting = card(to_card_markdown(facts.opening_statement), asks=asks, asks_label=label)
        await self.api.send(chat_id, "interactive", greeting, uuid=f"hello-{chat_id}"[:50])

    # ---- replies ------------------------------------------------------------------------------

    def reply(self, delivery: Delivery) -> FeishuReply:
        """``bot.contract.Platform.reply``: a new answer's card, or the one a replica that died
        was filling (its ids are in the state)."""
        where, message = delivery.where, delivery.message
        place = Place(str(where.get("chat_id") or ""), str(where.get("reply_to") or ""),
                      bool(where.get("in_thread")), message.key)  # fmt: skip
        return FeishuReply(
            self.api,
            place,
            labels=self.labels(message.locale),
            cardkit=self.cardkit,
            uuid=message.message_id[:40],
            save=delivery.save,
            state=dict(delivery.state) if delivery.state else None,
            files=self._answer_files,
            suggest=self.inbox.suggestions,
            feedback=self._feedback,
        )

    def labels(self, locale: str | None) -> Labels:
        def text(key: str) -> str:
            return self.inbox.text(f"feishu_{key}", locale)

        return Labels(text("thinking"), text("stop"), text("like"), text("dislike"),
                      text("suggested"))  # fmt: skip

    # ---- tasks --------------------------------------------------------------------------------

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:  # this task's boundary: one button's failure stays its own
                log.exception("Feishu card action failed")

        self._track(asyncio.create_task(run()))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def drain(self) -> None:
        """Until every answer and button started here has ended (tests, shutdown)."""
        while self.running:
            await asyncio.wait(set(self.running))


_TOAST_OF = {FormVerdict.ASKING: "info", FormVerdict.INVALID: "error",
             FormVerdict.FAILED: "error"}  # fmt: skip


def _report_late(task: asyncio.Task[Any]) -> None:
    """A late press's failure (nobody awaits it any more: the callback was answered)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Feishu form press failed after its toast", exc_info=exc)


def _toast(content: str, kind: str = "info") -> dict[str, Any]:
    return {"toast": {"type": kind, "content": content}}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackRejected("Feishu callback body is not JSON", status=400) from None
    if not isinstance(payload, dict):
        raise CallbackRejected("Feishu callback body is not a JSON object", status=400)
    return payload


def _section(payload: Any, name: str) -> dict[str, Any]:
    part = payload.get(name) if isinstance(payload, dict) else None
    return part if isinstance(part, dict) else {}

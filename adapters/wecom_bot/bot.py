"""The WeCom AI bot (智能机器人) at ``GET/POST /wecom/bot``: answers stream as Dify writes them.

The first reply to a message opens a ``stream``; WeCom then polls with refresh callbacks (about
once a second, on any replica) and shows whatever content the reply carries, until one says
``finish``. The answering replica writes the text so far into the message's journal entry (its
reply state), and every refresh is served from there; the stream's id names the entry. WeCom
stops polling 6 minutes after the message: an answer that ends later, or runs past a stream's
20 480 bytes, is delivered through the message's one-time ``response_url``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from aiohttp import web

from adapters.metering import meter
from adapters.spec import Services
from adapters.tencent.api import build_http, to_result
from adapters.tencent.callback import CallbackChecks, add_callback_route, params
from adapters.tencent.cards import answered_card, to_card
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.media import BotMediaFiles
from adapters.tencent.metering import is_limited
from adapters.wecom_bot.messages import (
    PLATFORM,
    BotPush,
    stream_reply,
    to_bot_push,
    to_incoming,
)
from adapters.wecom_bot.settings import WeComBotSettings
from bot.contract import (
    Allowlist,
    Delivery,
    FormVerdict,
    FormView,
    Inbox,
    Platform,
    ReplyCapabilities,
)
from bot.errors import CallbackRejected, ShuttingDown
from bot.models import Answer
from bot.stores import ReplyStates, State
from bot.text import split_text, utf8_length

log = logging.getLogger(__name__)

MAX_STREAM = 20_480  # bytes of UTF-8 in one stream's content
STREAM_WINDOW = 330.0  # WeCom polls for 6 minutes; past 5.5 the answer goes by response_url
Save = Callable[[State], Awaitable[None]]


class WeComBotReply:
    """Writes the answer so far into its journal entry; refreshes read it from there."""

    capabilities = ReplyCapabilities(
        can_edit=True, max_length=MAX_STREAM, measure="utf8", min_interval=0.5
    )

    def __init__(
        self,
        save: Save,
        *,
        opened_at: float,
        response_url: str,
        http: httpx.AsyncClient,
        window: float = STREAM_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._save = save
        self._opened_at = opened_at
        self._response_url = response_url
        self._http = http
        self._window = window
        self._clock = clock

    async def start(self) -> None:
        """The open stream is the sign of life."""

    async def update(self, text: str) -> None:
        await self._save({"content": _head(text), "finished": False})

    async def status(self, text: str) -> None:
        """The stream has no status line; the growing text shows progress."""

    async def finish(self, text: str, answer: Answer) -> None:
        links = [f"[{f.filename or f.type}]({f.url})" for f in answer.files if f.url not in text]
        await self._end("\n\n".join([text, *links]))

    async def fail(self, text: str, notice: str) -> None:
        await self._end(f"{text}\n\n{notice}" if text else notice)

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the stream ends with the form's text and a button card
        (``stream_with_template_card`` on the next refresh)."""
        shown = "\n\n".join(part for part in (text, form.text) if part.strip())
        await self._save({"content": _head(shown), "finished": True, "card": to_card(form)})

    async def _end(self, text: str) -> None:
        parts = split_text(text, MAX_STREAM, measure=utf8_length) if text else [""]
        await self._save({"content": parts[0], "finished": True})
        late = self._clock() - self._opened_at > self._window
        rest = parts if late else parts[1:]
        if rest and self._response_url:
            if len(rest) > 1:
                log.warning(
                    "answer longer than two WeCom messages; %d part(s) dropped", len(rest) - 1
                )
            await self._post_markdown(rest[0])

    async def _post_markdown(self, content: str) -> None:
        """``response_url``: plain JSON, usable once, valid for an hour."""
        body = orjson.dumps({"msgtype": "markdown", "markdown": {"content": content}})
        headers = {"Content-Type": "application/json"}
        try:
            response = await self._http.post(self._response_url, content=body, headers=headers)
            to_result(response, response.content)
        except (httpx.HTTPError, WeChatAPIError) as exc:
            log.error("answer not delivered by response_url: %s", exc)


def _head(text: str) -> str:
    return split_text(text, MAX_STREAM, measure=utf8_length)[0] if text else ""


def stream_id(entry_id: int) -> str:
    """A message's stream is named after its journal entry: every delivery and every refresh,
    on every replica, finds the same one."""
    return f"e{entry_id}"


def entry_of(stream: str) -> int | None:
    return int(stream[1:]) if stream.startswith("e") and stream[1:].isdigit() else None


class WeComBotAdapter:
    """Verifies and decrypts JSON callbacks and answers each with an encrypted JSON reply."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        *,
        checks: CallbackChecks,
        states: ReplyStates,
        http: httpx.AsyncClient,
        locale: str,
        per_chat: bool = False,
        window: float = STREAM_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.states = states
        self._checks = checks
        assert checks.crypto is not None  # the AI bot's callbacks are always encrypted
        self._crypto = checks.crypto
        self._http = http
        self._locale = locale
        self._per_chat = per_chat
        self.stream_window = window
        self._clock = clock

    def add_routes(self, app: web.Application, path: str = "/wecom/bot") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._first, read_body=False)
        add_callback_route(app, "POST", path, self.receive, precheck=self._first)

    def _first(self, request: web.Request) -> None:
        self._checks.precheck(request.query, sealed=True)

    async def start(self) -> None:
        """Nothing to open: WeCom calls us."""

    async def stop(self) -> None:
        """Nothing to stop: WeCom calls us (the web listener stops taking callbacks)."""

    async def close(self) -> None:
        await self._http.aclose()

    def reply(self, delivery: Delivery) -> WeComBotReply:
        """``bot.contract.Platform.reply``: the stream of this entry (a taker writes the same)."""
        where = delivery.where
        return WeComBotReply(
            delivery.save,
            opened_at=float(where["at"]) if "at" in where else self._clock(),
            response_url=str(where.get("response_url") or ""),
            http=self._http,
            window=self.stream_window,
            clock=self._clock,
        )

    async def verify(self, request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(body=await self._checks.open_echostr(request.query))

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        given, timestamp, nonce = params(request.query, "msg_signature", "timestamp", "nonce")
        envelope = _json(body)
        encrypted = envelope.get("encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypted, str):
            raise CallbackRejected("AI bot callback without encrypt", status=400)
        opened = self._crypto.open(given, timestamp, nonce, encrypted)
        await self._checks.first_time(request.query, sealed=True)
        push = to_bot_push(_json(opened))
        try:
            reply = await self._reply(push)
        except ShuttingDown:  # WeCom calls again; another replica opens the stream
            return web.Response(status=503, text="")
        if reply is None:
            return web.Response(text="")
        now = str(int(self._clock()))
        sealed = self._crypto.seal(orjson.dumps(reply), timestamp=now, nonce=nonce)
        envelope = {"encrypt": sealed.encrypt, "msgsignature": sealed.signature,
                    "timestamp": int(now), "nonce": nonce}  # fmt: skip
        return web.Response(body=orjson.dumps(envelope), content_type="application/json")

    async def _reply(self, push: BotPush) -> dict[str, Any] | None:
        if push.kind == "stream":  # a refresh: the newest text, wherever it was written
            return await self._refresh(push.stream_id)
        if push.kind == "event":
            if push.event == "template_card_event":
                return await self._clicked(push)
            return await self._welcome(push.bot_id) if push.event == "enter_chat" else None
        if not push.msg_id:
            raise CallbackRejected("AI bot message without msgid", status=400)
        message = to_incoming(push, text=push.text, per_chat=self._per_chat, locale=self._locale)
        answerable = bool(message.text or message.attachments)
        where = {"response_url": push.response_url, "at": self._clock()}
        # WeCom may call twice for one message: the second joins the first one's stream.
        accepted = await self.inbox.accept(message, where=where, answer=answerable)
        if accepted.new and not answerable:
            notice = self.inbox.text("wechat_unsupported", self._locale)
            await self.states.change(accepted.entry_id, lambda _: _shown(notice, finished=True))
        return await self._refresh(stream_id(accepted.entry_id))

    async def _refresh(self, stream: str) -> dict[str, Any]:
        entry_id = entry_of(stream)
        entry = await self.states.get(entry_id) if entry_id is not None else None
        if entry is None or entry.platform != PLATFORM:
            return stream_reply(stream, "", finished=True)
        state = entry.reply_state or {}
        content = str(state.get("content") or "")
        reply = stream_reply(stream, content, finished=bool(state.get("finished")))
        if state.get("finished") and isinstance(state.get("card"), dict):
            return {**reply, "msgtype": "stream_with_template_card", "template_card": state["card"]}
        return reply

    async def _clicked(self, push: BotPush) -> dict[str, Any] | None:
        """A form card's button: answered here and now (WeCom takes a card update in the reply
        to the click within 5 s). The form's stream has ended, so the rest of the run goes by
        the click's one-time ``response_url``."""
        view = await self.inbox.form(push.task_id)
        where = {"response_url": push.response_url, "at": 0.0} if push.response_url else None
        answer = await self.inbox.answer_form(
            push.task_id, action=push.event_key, inputs={}, user=push.user_id,
            locale=self._locale, where=where,
        )  # fmt: skip
        if view is None:
            return None
        title = next((a.title for a in view.form.actions if a.id == push.event_key), "")
        if answer.verdict is FormVerdict.SUBMITTED:
            card = answered_card(view, title or push.event_key)
        elif answer.verdict is FormVerdict.ASKING:  # the fields' questions, as messages
            card = answered_card(view, title or push.event_key, subtitle=answer.notice)
        elif answer.closed:
            card = answered_card(view, answer.notice)
        else:  # still open: the card says why not, for the clicker only
            update = {"response_type": "update_template_card", "userids": [push.user_id]}
            return {**update, "template_card": to_card(view, subtitle=answer.notice)}
        return {"response_type": "update_template_card", "template_card": card}

    async def _welcome(self, bot_id: str) -> dict[str, Any] | None:
        statement = (await self.inbox.facts(PLATFORM, workspace=bot_id)).opening_statement
        return {"msgtype": "text", "text": {"content": statement}} if statement else None


def _shown(content: str, *, finished: bool) -> State:
    return {"content": content, "finished": finished}


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackRejected("AI bot body is not JSON", status=400) from None


def build_wecom_bot(settings: WeComBotSettings, services: Services) -> Platform:
    """The platform from the settings, its routes added to the web app."""
    s = settings
    assert s.wecom_bot_token is not None and s.wecom_bot_encoding_aes_key is not None
    # The AI bot's receive id is documented as empty; not checking it keeps us working if it
    # is not (the signature, keyed by the token, authenticates every callback anyway).
    token = s.wecom_bot_token.get_secret_value()
    key = s.wecom_bot_encoding_aes_key.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, key, None),
        seen=services.callbacks,
        scope="wecom_bot",
    )
    api_base = str(s.wecom_api_base)
    adapter = WeComBotAdapter(
        services.inbox,
        checks=checks,
        states=services.states,
        http=meter(build_http(api_base), services.metrics, PLATFORM, limited=is_limited),
        locale=s.wechat_locale,
        per_chat=services.conversation_scope == "channel",
    )
    adapter.add_routes(services.web)
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=BotMediaFiles(services.fetch, key, api_base=api_base),
        allowlist=Allowlist.of(users=s.wecom_allowed_users),
    )

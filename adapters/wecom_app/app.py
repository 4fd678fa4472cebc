"""The WeCom (企业微信) self-built app at ``GET/POST /wecom``: encrypted callbacks, answers by API.

WeCom also redelivers a push it got no 200 for (5 s, three times), so the push is recorded in the
journal and acknowledged at once with an empty body, then answered through
``/cgi-bin/message/send``; every delivery of a MsgId after the first is dropped, on any replica,
and a replica that dies mid-answer leaves the entry to another one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from adapters.background import Background
from adapters.metering import meter
from adapters.spec import Services
from adapters.tencent.api import AccessTokens, PlatformAPI, build_http, wecom_token
from adapters.tencent.callback import CallbackChecks, add_callback_route
from adapters.tencent.cards import to_card
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.formatting import to_plain_text, to_wecom_markdown
from adapters.tencent.media import MediaFiles
from adapters.tencent.messages import refusal, to_incoming, to_push
from adapters.tencent.metering import is_limited
from adapters.tencent.outbound import AnswerMedia
from adapters.wecom_app.settings import WeComAppSettings
from bot.contract import (
    Allowlist,
    Delivery,
    FormVerdict,
    FormView,
    Inbox,
    Platform,
    ReplyCapabilities,
)
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.scheduler import Limit, Priority, Scheduler
from bot.errors import ShuttingDown
from bot.files.answers import AnswerFiles
from bot.models import Answer
from bot.ops.metrics import Metrics
from bot.stores import Budgets
from bot.text import split_text, utf8_length

log = logging.getLogger(__name__)

PLATFORM = "wecom"
MAX_MESSAGE = 2048  # bytes, text and markdown alike (longer text is truncated by WeCom)
RETRYABLE = frozenset({-1, 45033})  # system busy / unreachable, concurrency limit
SEND = "message/send"
Sleep = Callable[[float], Awaitable[None]]


class MemberLimiter:
    """WeCom drops (silently) an app's messages to one member beyond 30 a minute or 1000 an hour,
    so a send waits for room instead, in buckets every replica shares (``budgets``)."""

    def __init__(
        self,
        *,
        per_minute: int = 30,
        per_hour: int = 1000,
        budgets: Budgets | None = None,
        account: str = "",
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        limits = {
            SEND: (
                Limit.per_minute(per_minute, per_channel=True),
                Limit.per_window(per_hour, 3600.0, per_channel=True),
            )
        }
        budgets = budgets if budgets is not None else MemoryBudgets(clock=clock)
        scheduler = Scheduler(PLATFORM, budgets, limits, metrics=metrics, clock=clock, sleep=sleep)
        self._account = scheduler.account(account)

    async def acquire(self, user_id: str) -> None:
        """Until a message to ``user_id`` fits both of the member's buckets (an answer's parts
        are all the answer: they go as finals)."""
        await self._account.slot(SEND, priority=Priority.FINAL, channel=user_id)


class AppSender:
    """Sends an answer to one member: markdown or text, 2048-byte parts, within member limits."""

    def __init__(
        self,
        api: PlatformAPI,
        *,
        agent_id: int,
        markdown: bool,
        limiter: MemberLimiter,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.api = api
        self.agent_id = agent_id
        self._markdown = markdown
        self._limiter = limiter
        self._sleep = sleep

    async def send(self, user_id: str, text: str) -> None:
        content = to_wecom_markdown(text) if self._markdown else to_plain_text(text)
        kind = "markdown" if self._markdown else "text"
        for part in split_text(content or text, MAX_MESSAGE, measure=utf8_length):
            await self._limiter.acquire(user_id)
            body = {"touser": user_id, "agentid": self.agent_id, "msgtype": kind,
                    kind: {"content": part}}  # fmt: skip
            await self._post(body)

    async def send_card(self, user_id: str, card: dict[str, Any]) -> None:
        """A ``template_card`` message (a form's buttons)."""
        await self._limiter.acquire(user_id)
        body = {"touser": user_id, "agentid": self.agent_id, "msgtype": "template_card",
                "template_card": card}  # fmt: skip
        await self._post(body)

    async def update_card(self, user_id: str, response_code: str, replace_name: str) -> None:
        """Grey out a clicked card's buttons under ``replace_name`` (``response_code`` comes with
        the click and serves once)."""
        body = {"userids": [user_id], "agentid": self.agent_id, "response_code": response_code,
                "button": {"replace_name": replace_name}}  # fmt: skip
        await self.api.post("/cgi-bin/message/update_template_card", body)

    async def send_media(self, user_id: str, kind: str, media_id: str) -> None:
        """An ``image`` or ``file`` message with uploaded temporary media."""
        await self._limiter.acquire(user_id)
        body = {"touser": user_id, "agentid": self.agent_id, "msgtype": kind,
                kind: {"media_id": media_id}}  # fmt: skip
        await self._post(body)

    async def _post(self, body: dict[str, object]) -> None:
        for attempt in range(3):
            try:
                await self.api.post("/cgi-bin/message/send", body)
                return
            except WeChatAPIError as exc:
                if exc.errcode not in RETRYABLE or attempt == 2:
                    raise
                await self._sleep(2.0**attempt)


class WeComAppReply:
    """One answer to one member; WeCom app messages cannot be edited, so only the end counts.

    Its state records a delivered answer: a replica that takes the entry over after this one
    sent it but died before closing the entry sends nothing more."""

    capabilities = ReplyCapabilities(can_edit=False, max_length=MAX_MESSAGE, measure="utf8")

    def __init__(
        self,
        sender: AppSender,
        user_id: str,
        *,
        files: AnswerFiles | None = None,
        delivered: bool = False,
        save: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self._sender = sender
        self._user_id = user_id
        self._files = files
        self._delivered = delivered
        self._save = save

    async def start(self) -> None:
        """WeCom apps have no typing indicator."""

    async def update(self, text: str) -> None:
        """Never called (``can_edit`` is False)."""

    async def status(self, text: str) -> None:
        """No status line either."""

    async def finish(self, text: str, answer: Answer) -> None:
        if self._delivered:
            return
        if self._files is None:
            links = [f"{f.filename or f.type}: {f.url}" for f in answer.files if f.url not in text]
            await self._send("\n\n".join([text, *links]))
            return
        # Dify's file URLs expire in minutes: fetch and upload them before anything else.
        out = await AnswerMedia.prepare(
            self._files, self._sender.api, text, answer, kinds={"image", "file"}
        )
        await self._send("\n\n".join([out.text, *out.links]))
        for kind, media_id in out.media:
            await self._sender.send_media(self._user_id, kind, media_id)

    async def fail(self, text: str, notice: str) -> None:
        if not self._delivered:
            await self._send(f"{text}\n\n{notice}" if text else notice)

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the answer and the form's text, then a button card
        (``button_interaction``) whose ``task_id`` is the form's ref."""
        if not self._delivered:
            await self._send("\n\n".join(part for part in (text, form.text) if part.strip()))
        await self._sender.send_card(self._user_id, to_card(form))

    async def _send(self, text: str) -> None:
        await self._sender.send(self._user_id, text)
        self._delivered = True
        if self._save is not None:
            await self._save({"delivered": True})


class WeComAppAdapter:
    """Verifies and decrypts callbacks, acknowledges at once, answers through the API."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        *,
        corp_id: str,
        checks: CallbackChecks,
        sender: AppSender,
        locale: str,
        files: AnswerFiles | None = None,
    ) -> None:
        self.inbox = inbox
        self._files = files
        self._corp_id = corp_id
        self._checks = checks
        self._sender = sender
        self._locale = locale
        self._background = Background()

    def add_routes(self, app: web.Application, path: str = "/wecom") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._first, read_body=False)
        add_callback_route(app, "POST", path, self.receive, precheck=self._first)

    def _first(self, request: web.Request) -> None:
        """WeCom callbacks are always encrypted: ``msg_signature`` and a fresh timestamp."""
        self._checks.precheck(request.query, sealed=True)

    async def start(self) -> None:
        """Nothing to open: WeCom calls us."""

    async def stop(self) -> None:
        """Nothing to stop: WeCom calls us (the web listener stops taking callbacks)."""

    async def close(self) -> None:
        await self._background.close()
        await self._sender.api.http.aclose()

    def reply(self, delivery: Delivery) -> WeComAppReply:
        """``bot.contract.Platform.reply``: the answer to the member who asked."""
        return WeComAppReply(
            self._sender,
            str(delivery.where["user"]),
            files=self._files,
            delivered=bool((delivery.state or {}).get("delivered")),
            save=delivery.save,
        )

    async def verify(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """URL verification: decrypt ``echostr`` and return it as is (WeCom wants it within 1 s)."""
        return web.Response(body=await self._checks.open_echostr(request.query))

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        opened = await self._checks.open_xml(request.query, body, sealed=True)
        push = to_push(opened.fields)
        if push.kind == "event":
            if push.event == "template_card_event":
                self._background.spawn(self._clicked(opened.fields, push.user_id))
            return web.Response(text="")
        message = to_incoming(push, platform=PLATFORM, workspace=self._corp_id, locale=self._locale)
        problem = refusal(push, downloads=True)
        try:
            accepted = await self.inbox.accept(
                message, where={"user": push.user_id}, answer=problem is None
            )
        except ShuttingDown:  # WeCom delivers again in 5 s, to a replica that is not stopping
            return web.Response(status=503, text="")
        if problem is not None and accepted.new:
            notice = self.inbox.text(problem, self._locale)
            self._background.spawn(self._sender.send(push.user_id, notice))
        return web.Response(text="")  # WeCom: 200 with an empty body = received, no reply

    async def _clicked(self, fields: dict[str, str], user_id: str) -> None:
        """A form card's button (``TaskId`` = the form's ref, ``EventKey`` = the action): the
        core answers it; the card's buttons turn grey with the choice, or with why not."""
        ref, action = fields.get("TaskId", ""), fields.get("EventKey", "")
        view = await self.inbox.form(ref)
        answer = await self.inbox.answer_form(
            ref, action=action, inputs={}, user=user_id, locale=self._locale
        )
        title = next((a.title for a in view.form.actions if a.id == action), action) if view else ""
        grey = {FormVerdict.SUBMITTED: title, FormVerdict.ASKING: title,
                FormVerdict.ALREADY: answer.notice, FormVerdict.EXPIRED: answer.notice}  # fmt: skip
        if (code := fields.get("ResponseCode")) and answer.verdict in grey:
            await self._sender.update_card(user_id, code, grey[answer.verdict])
        if answer.verdict not in (FormVerdict.SUBMITTED, FormVerdict.ALREADY, FormVerdict.EXPIRED):
            await self._sender.send(user_id, answer.notice)  # a field's question, or why not


def build_wecom_app(settings: WeComAppSettings, services: Services) -> Platform:
    """The platform from the settings, its routes added to the web app."""
    s = settings
    assert s.wecom_corp_id and s.wecom_agent_id and s.wecom_secret and s.wecom_token
    assert s.wecom_encoding_aes_key is not None
    token = s.wecom_token.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, s.wecom_encoding_aes_key.get_secret_value(), s.wecom_corp_id),
        seen=services.callbacks,
        scope=f"{PLATFORM}:{s.wecom_corp_id}:{s.wecom_agent_id}",
    )
    http = meter(build_http(str(s.wecom_api_base)), services.metrics, PLATFORM, limited=is_limited)
    fetch = partial(
        wecom_token, http, corp_id=s.wecom_corp_id, secret=s.wecom_secret.get_secret_value()
    )
    name = f"wecom:{s.wecom_corp_id}:{s.wecom_agent_id}"
    api = PlatformAPI(http, AccessTokens(services.tokens, name, fetch))
    sender = AppSender(
        api,
        agent_id=int(s.wecom_agent_id),
        markdown=s.wecom_reply_format == "markdown",
        limiter=MemberLimiter(
            budgets=services.budgets,
            account=f"{s.wecom_corp_id}:{s.wecom_agent_id}",
            metrics=services.metrics,
            sleep=services.sleep,
        ),
    )
    # The account's route may set the language of the bot's own texts.
    locale = services.inbox.locale(PLATFORM, workspace=s.wecom_corp_id) or s.wechat_locale
    adapter = WeComAppAdapter(
        services.inbox, corp_id=s.wecom_corp_id, checks=checks, sender=sender, locale=locale,
        files=services.answer_files,
    )  # fmt: skip
    adapter.add_routes(services.web)
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=MediaFiles(api, services.fetch, api_base=str(s.wecom_api_base)),
        allowlist=Allowlist.of(users=s.wecom_allowed_users),
    )

"""The WeCom (企业微信) self-built app at ``GET/POST /wecom``: encrypted callbacks, answers by API.

WeCom also redelivers a push it got no 200 for (5 s, three times), so the push is acknowledged at
once with an empty body and answered later through ``/cgi-bin/message/send``; every delivery of
a MsgId is recorded in the shared store and only the first is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.tencent.api import AccessTokens, PlatformAPI, build_http, wecom_token
from adapters.tencent.background import Background
from adapters.tencent.callback import CallbackChecks, add_callback_route
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.formatting import to_plain_text, to_wecom_markdown
from adapters.tencent.media import MediaFiles
from adapters.tencent.messages import Push, to_incoming, to_push
from adapters.tencent.metering import meter
from adapters.tencent.outbound import AnswerMedia
from adapters.tencent.questions import to_question
from adapters.tencent.texts import TEXTS as WECHAT_TEXTS
from bot.contract import ReplyCapabilities
from bot.delivery.inbox import Dispatcher
from bot.errors import ConfigError
from bot.files.answers import AnswerFiles
from bot.models import Answer
from bot.text import split_text, utf8_length
from storage.callbacks import SeenCallbacks
from storage.tokens import TokenStore
from storage.wechat_answers import PendingAnswers

if TYPE_CHECKING:
    from difybot.app import Core

log = logging.getLogger(__name__)

PLATFORM = "wecom"
MAX_MESSAGE = 2048  # bytes, text and markdown alike (longer text is truncated by WeCom)
RETRYABLE = frozenset({-1, 45033})  # system busy / unreachable, concurrency limit
Sleep = Callable[[float], Awaitable[None]]


class MemberLimiter:
    """WeCom drops (silently) an app's messages to one member beyond 30 a minute or 1000 an hour,
    so a send waits for room instead. Per process; each replica keeps its own count."""

    def __init__(
        self,
        *,
        per_minute: int = 30,
        per_hour: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._limits = ((60.0, per_minute), (3600.0, per_hour))
        self._clock = clock
        self._sleep = sleep
        self._sent: defaultdict[str, deque[float]] = defaultdict(deque)

    async def acquire(self, user_id: str) -> None:
        while (wait := self._wait(user_id)) > 0:
            await self._sleep(wait)
        self._sent[user_id].append(self._clock())

    def _wait(self, user_id: str) -> float:
        now, sent = self._clock(), self._sent[user_id]
        while sent and sent[0] <= now - 3600.0:
            sent.popleft()
        wait = 0.0
        for span, limit in self._limits:
            recent = [t for t in sent if t > now - span]
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + span - now)
        return wait


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
    """One answer to one member; WeCom app messages cannot be edited, so only the end counts."""

    capabilities = ReplyCapabilities(can_edit=False, max_length=MAX_MESSAGE, measure="utf8")

    def __init__(
        self,
        sender: AppSender,
        user_id: str,
        done: Callable[[], Awaitable[None]],
        *,
        files: AnswerFiles | None = None,
    ) -> None:
        self._sender = sender
        self._user_id = user_id
        self._done = done
        self._files = files

    async def start(self) -> None:
        """WeCom apps have no typing indicator."""

    async def update(self, text: str) -> None:
        """Never called (``can_edit`` is False)."""

    async def status(self, text: str) -> None:
        """No status line either."""

    async def finish(self, text: str, answer: Answer) -> None:
        try:
            if self._files is None:
                links = [
                    f"{f.filename or f.type}: {f.url}" for f in answer.files if f.url not in text
                ]
                await self._sender.send(self._user_id, "\n\n".join([text, *links]))
                return
            # Dify's file URLs expire in minutes: fetch and upload them before anything else.
            out = await AnswerMedia.prepare(
                self._files, self._sender.api, text, answer, kinds={"image", "file"}
            )
            await self._sender.send(self._user_id, "\n\n".join([out.text, *out.links]))
            for kind, media_id in out.media:
                await self._sender.send_media(self._user_id, kind, media_id)
        finally:
            await self._done()

    async def fail(self, text: str, notice: str) -> None:
        try:
            await self._sender.send(self._user_id, f"{text}\n\n{notice}" if text else notice)
        finally:
            await self._done()


class WeComAppAdapter:
    """Verifies and decrypts callbacks, acknowledges at once, answers through the API."""

    name = PLATFORM

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        corp_id: str,
        checks: CallbackChecks,
        sender: AppSender,
        store: PendingAnswers,
        locale: str,
        files: AnswerFiles | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self._files = files
        self._corp_id = corp_id
        self._checks = checks
        self._sender = sender
        self._locale = locale
        self._background = Background()

    @property
    def account(self) -> str:
        return f"{PLATFORM}:{self._corp_id}:{self._sender.agent_id}"

    def add_routes(self, app: web.Application, path: str = "/wecom") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._first, read_body=False)
        add_callback_route(app, "POST", path, self.receive, precheck=self._first)

    def _first(self, request: web.Request) -> None:
        """WeCom callbacks are always encrypted: ``msg_signature`` and a fresh timestamp."""
        self._checks.precheck(request.query, sealed=True)

    async def start(self) -> None:
        """Nothing to open: WeCom calls us."""

    async def stop(self) -> None:
        await self._background.close()
        await self._sender.api.http.aclose()

    async def verify(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """URL verification: decrypt ``echostr`` and return it as is (WeCom wants it within 1 s)."""
        return web.Response(body=await self._checks.open_echostr(request.query))

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        opened = await self._checks.open_xml(request.query, body, sealed=True)
        push = to_push(opened.fields)
        if push.kind != "event":
            arrival = await self.store.arrive(self.account, push.msg_id, push.user_id)
            if arrival.deliveries == 1:  # a redelivery joins the answer already under way
                self._background.spawn(self._answer(push, arrival.id))
        return web.Response(text="")  # WeCom: 200 with an empty body = received, no reply

    async def _answer(self, push: Push, answer_id: str) -> None:
        incoming = self.dispatcher.routing.apply(  # routing: app and locale
            to_incoming(
                push, platform=PLATFORM, workspace=self._corp_id, text="", locale=self._locale
            )
        )

        async def done() -> None:
            await self.store.complete(answer_id, [])

        reply = WeComAppReply(self._sender, push.user_id, done, files=self._files)
        api, dify = self._sender.api, self.dispatcher.dify_for(incoming.key)  # routing
        text, problem = await to_question(push, api=api, dify=dify, dify_user=incoming.dify_user)
        if problem:
            await reply.fail("", self.dispatcher.texts.get(problem, self._locale))
            return
        incoming = replace(incoming, text=text)
        try:
            self.dispatcher.submit(incoming, reply)
        except RuntimeError:  # shutting down: say so rather than stay silent
            await reply.fail("", self.dispatcher.texts.get("unavailable", self._locale))


def build_wecom_app(core: Core, app: web.Application) -> WeComAppAdapter:
    """The adapter from the settings, its routes added to ``app``."""
    core.dispatcher.texts.add(WECHAT_TEXTS)
    s = core.settings
    if not (s.wecom_corp_id and s.wecom_agent_id and s.wecom_secret and s.wecom_token):
        raise ConfigError("WECOM_CORP_ID, WECOM_AGENT_ID, WECOM_SECRET and WECOM_TOKEN are needed")
    if s.wecom_encoding_aes_key is None:
        raise ConfigError("WECOM_ENCODING_AES_KEY is needed (WeCom callbacks are always encrypted)")
    if not s.wecom_agent_id.isdigit():
        raise ConfigError("WECOM_AGENT_ID must be the app's numeric AgentId")
    token = s.wecom_token.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, s.wecom_encoding_aes_key.get_secret_value(), s.wecom_corp_id),
        seen=SeenCallbacks(core.engine),
        scope=f"{PLATFORM}:{s.wecom_corp_id}:{s.wecom_agent_id}",
    )
    http = meter(build_http(str(s.wecom_api_base)), core.metrics, PLATFORM)  # metrics
    fetch = partial(
        wecom_token, http, corp_id=s.wecom_corp_id, secret=s.wecom_secret.get_secret_value()
    )
    name = f"wecom:{s.wecom_corp_id}:{s.wecom_agent_id}"
    api = PlatformAPI(http, AccessTokens(TokenStore(core.engine), name, fetch))
    sender = AppSender(
        api,
        agent_id=int(s.wecom_agent_id),
        markdown=s.wecom_reply_format == "markdown",
        limiter=MemberLimiter(),
    )
    adapter = WeComAppAdapter(
        core.dispatcher, corp_id=s.wecom_corp_id, checks=checks, sender=sender,
        store=PendingAnswers(core.engine), files=core.files.answers if core.files else None,
        locale=core.dispatcher.routing.resolve(PLATFORM, workspace=s.wecom_corp_id).locale
        or s.wechat_locale,  # routing: the account's route may set the bot's language
    )  # fmt: skip
    if core.files is not None:
        core.files.intake.sources[PLATFORM] = MediaFiles(
            api, core.files.fetch, api_base=str(s.wecom_api_base)
        )
    adapter.add_routes(app)
    return adapter

"""The WeChat Official Account (公众号) at ``GET/POST /wechat``: verify, answer within 5 s, push."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from adapters.metering import meter
from adapters.spec import Services
from adapters.tencent.api import AccessTokens, PlatformAPI, build_http, stable_token
from adapters.tencent.callback import CallbackChecks, add_callback_route, params, seal_xml
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.formatting import to_plain_text
from adapters.tencent.media import MediaFiles
from adapters.tencent.messages import Push, refusal, to_incoming, to_push
from adapters.tencent.metering import is_limited
from adapters.tencent.outbound import AnswerMedia, CustomerService
from adapters.tencent.xml import text_reply
from adapters.wechat.passive import PassiveAnswers, PassiveTiming
from adapters.wechat.settings import OfficialAccountSettings
from bot.contract import Allowlist, Delivery, Inbox, Platform, ReplyCapabilities
from bot.errors import ShuttingDown
from bot.files.answers import AnswerFiles
from bot.models import Answer

log = logging.getLogger(__name__)

PLATFORM = "wechat"


class OfficialReply:
    """One answer for the 5-second machinery: WeChat cannot edit, so only the end counts."""

    capabilities = ReplyCapabilities(can_edit=False, max_length=2048, measure="utf8")

    def __init__(
        self,
        answers: PassiveAnswers,
        entry_id: int,
        user_id: str,
        *,
        images: OfficialImages | None = None,
    ) -> None:
        self._answers = answers
        self._answer_id = entry_id
        self._user_id = user_id
        self._images = images

    async def start(self) -> None:
        """Nothing to show: the passive reply or "typing" is the 5-second machinery's business."""

    async def update(self, text: str) -> None:
        """Never called (``can_edit`` is False)."""

    async def status(self, text: str) -> None:
        """WeChat has no status line."""

    async def finish(self, text: str, answer: Answer) -> None:
        if self._images is not None:  # verified: images go as media by customer service
            out = await AnswerMedia.prepare(
                self._images.files, self._images.api, text, answer, kinds={"image"}
            )
            body = "\n".join([to_plain_text(out.text), *out.links])
            await self._answers.complete(self._answer_id, self._user_id, body)
            await self._images.send(self._user_id, out.media)
            return
        plain = to_plain_text(text)
        # Files Dify produced but did not mention in the text: keep their links (never lost).
        links = [f"{f.filename or f.type}: {f.url}" for f in answer.files if f.url not in text]
        await self._answers.complete(self._answer_id, self._user_id, "\n".join([plain, *links]))

    async def fail(self, text: str, notice: str) -> None:
        plain = to_plain_text(text)
        await self._answers.complete(
            self._answer_id, self._user_id, f"{plain}\n\n{notice}" if plain else notice
        )


@dataclass(frozen=True, slots=True)
class OfficialImages:
    """Answer images for a verified account: uploaded as media, sent by customer service
    after the text (a send that fails is logged; its link was already dropped from the text)."""

    files: AnswerFiles
    api: PlatformAPI
    service: CustomerService

    async def send(self, user_id: str, media: list[tuple[str, str]]) -> None:
        for kind, media_id in media:
            try:
                await self.service.send_media(user_id, kind, media_id)
            except WeChatAPIError as exc:
                log.warning("answer image not sent to a WeChat user: %s", exc)


class OfficialAccountAdapter:
    """Receives pushes, replies passively when it can, and hands the rest to ``PassiveAnswers``."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        *,
        checks: CallbackChecks,
        app_id: str,
        answers: PassiveAnswers,
        api: PlatformAPI | None,
        locale: str,
        images: OfficialImages | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self._images = images
        self.answers = answers
        self._checks = checks
        self._crypto = checks.crypto
        self._app_id = app_id
        self._api = api
        self._locale = locale
        self._clock = clock

    def add_routes(self, app: web.Application, path: str = "/wechat") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._verify_first,
                           read_body=False)  # fmt: skip
        add_callback_route(app, "POST", path, self.receive, precheck=self._receive_first)

    async def start(self) -> None:
        """Nothing to open: WeChat calls us."""

    async def stop(self) -> None:
        """Nothing to stop: WeChat calls us (the web listener stops taking callbacks)."""

    async def close(self) -> None:
        await self.answers.close()
        if self._api is not None:
            await self._api.http.aclose()

    def reply(self, delivery: Delivery) -> OfficialReply:
        """``bot.contract.Platform.reply``: the answer goes into the entry's delivery state,
        where every delivery of the message (on any replica) and the user's next one find it."""
        user = str(delivery.where["user"])
        return OfficialReply(self.answers, delivery.entry_id, user, images=self._images)

    def _verify_first(self, request: web.Request) -> None:
        """URL verification is plainly signed in every mode."""
        self._checks.precheck(request.query, sealed=False)

    def _receive_first(self, request: web.Request) -> None:
        self._checks.precheck(request.query, sealed=self._checks.is_sealed(request.query))

    async def verify(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """URL verification: the plain ``echostr`` back when the signature checks out."""
        (echostr,) = params(request.query, "echostr")
        await self._checks.first_time(request.query, sealed=False)
        return web.Response(text=echostr)

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        arrival = self._clock()  # the body came at once (a slow one is cut at its deadline)
        sealed = self._checks.is_sealed(request.query)
        opened = await self._checks.open_xml(request.query, body, sealed=sealed)
        push = to_push(opened.fields)
        try:
            text = await self._reply_text(push, arrival, request)
        except ShuttingDown:  # WeChat delivers again in 5 s, to a replica that is not stopping
            return web.Response(status=503, text="")
        if not text:
            return web.Response(text="success")  # WeChat: no reply, and no redelivery
        now = int(self._clock())
        xml = text_reply(
            to_user=push.user_id, from_user=push.account, content=text, create_time=now
        )
        if opened.encrypted and self._crypto is not None:
            xml = seal_xml(self._crypto, xml, nonce=opened.nonce, timestamp=now)
        return web.Response(body=xml, content_type="text/xml", charset="utf-8")

    async def _reply_text(self, push: Push, arrival: float, request: web.Request) -> str | None:
        if push.kind == "event":
            return await self._welcome() if push.event == "subscribe" else None
        if problem := refusal(push, downloads=self._api is not None):
            return self.inbox.text(problem, self._locale)
        message = to_incoming(push, platform=PLATFORM, workspace=self._app_id, locale=self._locale)
        # The user was told to send any message to get an answer: this one fetches it.
        owed = await self.answers.owed_to(message.key.place)
        where: dict[str, Any] = {"user": push.user_id, "fetch": owed.id if owed else None}
        accepted = await self.inbox.accept(message, where=where, answer=owed is None)
        target = await self._target(accepted.entry_id, owed.id if owed and accepted.new else None)

        def connected() -> bool:
            transport = request.transport
            return transport is not None and not transport.is_closing()

        return await self.answers.reply_for(
            accepted.entry_id, target=target, arrival=arrival, connected=connected
        )

    async def _target(self, entry_id: int, fetch: int | None) -> int:
        """The entry whose answer this delivery carries: the owed one its message fetches (as
        its first delivery decided, on whichever replica), else its own."""
        if fetch is None:
            entry = await self.answers.states.get(entry_id)
            fetch = entry.reply.get("fetch") if entry is not None else None
        return int(fetch) if fetch else entry_id

    async def _welcome(self) -> str | None:
        """``subscribe``: the Dify app's opening statement, if it comes within the window."""
        try:
            async with asyncio.timeout(self.answers.timing.window):
                facts = await self.inbox.facts(PLATFORM, workspace=self._app_id)
        except TimeoutError:
            log.warning("no opening statement for a new follower: Dify is slow")
            return None
        return to_plain_text(facts.opening_statement)[:600] or None  # ≤ 600 chars < 2048 bytes


def build_official_account(settings: OfficialAccountSettings, services: Services) -> Platform:
    """The platform from the settings, its routes added to the web app."""
    assert settings.wechat_token is not None and settings.wechat_app_id
    app_id = settings.wechat_app_id
    key = settings.wechat_encoding_aes_key
    token = settings.wechat_token.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, key.get_secret_value(), app_id) if key else None,
        seen=services.callbacks,
        scope=f"{PLATFORM}:{app_id}",
        compatible=settings.wechat_compatible_mode,
    )
    api = None
    if settings.wechat_app_secret is not None:
        http = meter(
            build_http(str(settings.wechat_api_base)),
            services.metrics,
            PLATFORM,
            limited=is_limited,
        )
        fetch = partial(
            stable_token, http, app_id=app_id, secret=settings.wechat_app_secret.get_secret_value()
        )
        api = PlatformAPI(http, AccessTokens(services.tokens, f"wechat:{app_id}", fetch))
    # The account's route may set the language of the bot's own texts.
    locale = services.inbox.locale(PLATFORM, workspace=app_id) or settings.wechat_locale
    verified = settings.wechat_account_verified and api is not None
    service = CustomerService(api) if verified and api is not None else None
    answers = PassiveAnswers(
        services.states,
        text=services.inbox.text,
        locale=locale,
        timing=PassiveTiming(window=settings.wechat_reply_window),
        service=service,
    )
    images = None
    if service is not None and api is not None:
        images = OfficialImages(services.answer_files, api, service)
    adapter = OfficialAccountAdapter(
        services.inbox, checks=checks, app_id=app_id, answers=answers, api=api, locale=locale,
        images=images,
    )  # fmt: skip
    adapter.add_routes(services.web)
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=MediaFiles(api, services.fetch, api_base=str(settings.wechat_api_base)),
        allowlist=Allowlist.of(users=settings.wechat_allowed_users),
    )

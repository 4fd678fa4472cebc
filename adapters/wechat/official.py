"""The WeChat Official Account (公众号) at ``GET/POST /wechat``: verify, answer within 5 s, push."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.tencent.api import AccessTokens, PlatformAPI, build_http, stable_token
from adapters.tencent.background import Background
from adapters.tencent.callback import CallbackChecks, add_callback_route, params, seal_xml
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.formatting import to_plain_text
from adapters.tencent.media import MediaFiles
from adapters.tencent.messages import Push, to_incoming, to_push
from adapters.tencent.metering import meter
from adapters.tencent.outbound import AnswerMedia, CustomerService
from adapters.tencent.questions import to_question
from adapters.tencent.texts import TEXTS as WECHAT_TEXTS
from adapters.tencent.xml import text_reply
from adapters.wechat.passive import PassiveAnswers, PassiveTiming
from bot.contract import ReplyCapabilities
from bot.delivery.inbox import Dispatcher
from bot.errors import ConfigError, DifyError
from bot.files.answers import AnswerFiles
from bot.models import Answer, IncomingMessage
from storage.callbacks import SeenCallbacks
from storage.tokens import TokenStore
from storage.wechat_answers import PendingAnswers

if TYPE_CHECKING:
    from difybot.app import Core

log = logging.getLogger(__name__)

PLATFORM = "wechat"
KEEP_ANSWERS = 3 * 24 * 3600.0  # an owed answer waits this long for the user's next message


class OfficialReply:
    """One answer for the 5-second machinery: WeChat cannot edit, so only the end counts."""

    capabilities = ReplyCapabilities(can_edit=False, max_length=2048, measure="utf8")

    def __init__(
        self,
        answers: PassiveAnswers,
        answer_id: str,
        user_id: str,
        *,
        images: OfficialImages | None = None,
    ) -> None:
        self._answers = answers
        self._answer_id = answer_id
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
        dispatcher: Dispatcher,
        *,
        checks: CallbackChecks,
        app_id: str,
        answers: PassiveAnswers,
        api: PlatformAPI | None,
        locale: str,
        images: OfficialImages | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self._images = images
        self.answers = answers
        self._checks = checks
        self._crypto = checks.crypto
        self._app_id = app_id
        self._api = api
        self._locale = locale
        self._clock = clock
        self._background = Background()

    def add_routes(self, app: web.Application, path: str = "/wechat") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._verify_first,
                           read_body=False)  # fmt: skip
        add_callback_route(app, "POST", path, self.receive, precheck=self._receive_first)

    async def start(self) -> None:
        self._background.every(3600, partial(self.answers.store.prune, older_than=KEEP_ANSWERS))

    async def stop(self) -> None:
        await self._background.close()
        await self.answers.close()
        if self._api is not None:
            await self._api.http.aclose()

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
        text = await self._reply_text(push, arrival, request)
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

        def connected() -> bool:
            transport = request.transport
            return transport is not None and not transport.is_closing()

        async def start(answer_id: str) -> None:
            self._background.spawn(self._answer(push, answer_id))

        return await self.answers.reply_for(
            push.user_id, push.msg_id, arrival=arrival, start=start, connected=connected
        )

    async def _answer(self, push: Push, answer_id: str) -> None:
        """Turn the push into a question (transcribing voice if needed) and ask the dispatcher."""
        reply = OfficialReply(self.answers, answer_id, push.user_id, images=self._images)
        try:
            await self._ask(push, reply)
        except Exception:  # the answer row must not stay "running": the user is owed a reply
            log.exception("could not start answering a WeChat message")
            await reply.fail("", self.dispatcher.texts.get("error", self._locale))

    async def _ask(self, push: Push, reply: OfficialReply) -> None:
        asked = self._incoming(push, "")
        user, dify = asked.dify_user, self.dispatcher.dify_for(asked.key)  # routing: its app
        text, problem = await to_question(push, api=self._api, dify=dify, dify_user=user)
        if problem:
            await reply.fail("", self.dispatcher.texts.get(problem, self._locale))
            return
        self.dispatcher.submit(self._incoming(push, text), reply)

    async def _welcome(self) -> str | None:
        """``subscribe``: the Dify app's opening statement, if it comes within the window."""
        try:
            async with asyncio.timeout(self.answers.timing.window):
                app = self.dispatcher.routing.resolve(PLATFORM, workspace=self._app_id).app
                parameters = await self.dispatcher.dify_for(app).parameters()  # routing
        except (DifyError, TimeoutError) as exc:
            log.warning("no opening statement for a new follower: %s", exc)
            return None
        statement = str(parameters.get("opening_statement") or "")
        return to_plain_text(statement)[:600] or None  # ≤ 600 characters stays under 2048 bytes

    def _incoming(self, push: Push, text: str) -> IncomingMessage:
        message = to_incoming(
            push, platform=PLATFORM, workspace=self._app_id, text=text, locale=self._locale
        )
        return self.dispatcher.routing.apply(message)  # routing: app and locale


def build_official_account(core: Core, app: web.Application) -> OfficialAccountAdapter:
    """The adapter from the settings, its routes added to ``app``."""
    core.dispatcher.texts.add(WECHAT_TEXTS)
    settings = core.settings
    if settings.wechat_token is None or not settings.wechat_app_id:
        raise ConfigError("WECHAT_TOKEN and WECHAT_APP_ID are both needed for the Official Account")
    app_id = settings.wechat_app_id
    key = settings.wechat_encoding_aes_key
    token = settings.wechat_token.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, key.get_secret_value(), app_id) if key else None,
        seen=SeenCallbacks(core.engine),
        scope=f"{PLATFORM}:{app_id}",
        compatible=settings.wechat_compatible_mode,
    )
    api = None
    if settings.wechat_app_secret is not None:
        http = meter(build_http(str(settings.wechat_api_base)), core.metrics, PLATFORM)
        fetch = partial(
            stable_token, http, app_id=app_id, secret=settings.wechat_app_secret.get_secret_value()
        )
        tokens = AccessTokens(TokenStore(core.engine), f"wechat:{app_id}", fetch)
        api = PlatformAPI(http, tokens)
    # routing: the account's route may set the language of the bot's own texts.
    locale = core.dispatcher.routing.resolve(PLATFORM, workspace=app_id).locale
    locale = locale or settings.wechat_locale
    verified = settings.wechat_account_verified and api is not None
    service = CustomerService(api) if verified and api is not None else None
    answers = PassiveAnswers(
        PendingAnswers(core.engine),
        account=f"{PLATFORM}:{app_id}",
        texts=core.dispatcher.texts,
        locale=locale,
        timing=PassiveTiming(window=settings.wechat_reply_window),
        service=service,
    )
    images = None
    if core.files is not None:
        core.files.intake.sources[PLATFORM] = MediaFiles(
            api, core.files.fetch, api_base=str(settings.wechat_api_base)
        )
        if service is not None and api is not None:
            images = OfficialImages(core.files.answers, api, service)
    adapter = OfficialAccountAdapter(
        core.dispatcher, checks=checks, app_id=app_id, answers=answers, api=api, locale=locale,
        images=images,
    )  # fmt: skip
    adapter.add_routes(app)
    return adapter

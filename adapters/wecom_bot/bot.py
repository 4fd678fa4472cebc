"""The WeCom AI bot (智能机器人) at ``GET/POST /wecom/bot``: answers stream as Dify writes them.

The first reply to a message opens a ``stream``; WeCom then polls with refresh callbacks (about
once a second, on any replica) and shows whatever content the reply carries, until one says
``finish``. The answering replica writes the text so far to the shared store, and every refresh is
served from there. WeCom stops polling 6 minutes after the message: an answer that ends later, or
runs past a stream's 20 480 bytes, is delivered through the message's one-time ``response_url``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from aiohttp import web

from adapters.tencent.api import build_http, to_result
from adapters.tencent.background import Background
from adapters.tencent.callback import CallbackChecks, add_callback_route, params
from adapters.tencent.crypto import MessageCrypto
from adapters.tencent.errors import CallbackRejected, WeChatAPIError
from adapters.tencent.media import BotMediaFiles
from adapters.tencent.metering import meter
from adapters.tencent.texts import TEXTS as WECHAT_TEXTS
from adapters.wecom_bot.messages import (
    PLATFORM,
    BotPush,
    stream_reply,
    to_bot_push,
    to_incoming,
)
from bot.contract import ReplyCapabilities
from bot.delivery.inbox import Dispatcher
from bot.errors import ConfigError, DifyError
from bot.models import Answer
from bot.text import split_text, utf8_length
from storage.callbacks import SeenCallbacks
from storage.wecom_streams import StoredStream, StreamStore

if TYPE_CHECKING:
    from difybot.app import Core

log = logging.getLogger(__name__)

MAX_STREAM = 20_480  # bytes of UTF-8 in one stream's content
STREAM_WINDOW = 330.0  # WeCom polls for 6 minutes; past 5.5 the answer goes by response_url
KEEP_STREAMS = 24 * 3600.0


class WeComBotReply:
    """Writes the answer so far into the shared stream state; refreshes read it from there."""

    capabilities = ReplyCapabilities(
        can_edit=True, max_length=MAX_STREAM, measure="utf8", min_interval=0.5
    )

    def __init__(
        self,
        streams: StreamStore,
        stream: StoredStream,
        *,
        http: httpx.AsyncClient,
        window: float = STREAM_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._streams = streams
        self._stream = stream
        self._http = http
        self._window = window
        self._clock = clock

    async def start(self) -> None:
        """The open stream is the sign of life."""

    async def update(self, text: str) -> None:
        await self._streams.write(self._stream.stream_id, _head(text))

    async def status(self, text: str) -> None:
        """The stream has no status line; the growing text shows progress."""

    async def finish(self, text: str, answer: Answer) -> None:
        links = [f"[{f.filename or f.type}]({f.url})" for f in answer.files if f.url not in text]
        await self._end("\n\n".join([text, *links]))

    async def fail(self, text: str, notice: str) -> None:
        await self._end(f"{text}\n\n{notice}" if text else notice)

    async def _end(self, text: str) -> None:
        parts = split_text(text, MAX_STREAM, measure=utf8_length) if text else [""]
        await self._streams.write(self._stream.stream_id, parts[0], finished=True)
        late = self._clock() - self._stream.created_at > self._window
        rest = parts if late else parts[1:]
        if rest and self._stream.response_url:
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
            response = await self._http.post(
                self._stream.response_url, content=body, headers=headers
            )
            to_result(response, response.content)
        except (httpx.HTTPError, WeChatAPIError) as exc:
            log.error("answer not delivered by response_url: %s", exc)


def _head(text: str) -> str:
    return split_text(text, MAX_STREAM, measure=utf8_length)[0] if text else ""


class WeComBotAdapter:
    """Verifies and decrypts JSON callbacks and answers each with an encrypted JSON reply."""

    name = "wecom_bot"

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        checks: CallbackChecks,
        streams: StreamStore,
        http: httpx.AsyncClient,
        locale: str,
        per_chat: bool = False,
        window: float = STREAM_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self.streams = streams
        self._checks = checks
        assert checks.crypto is not None  # the AI bot's callbacks are always encrypted
        self._crypto = checks.crypto
        self._http = http
        self._locale = locale
        self._per_chat = per_chat
        self.stream_window = window
        self._clock = clock
        self._background = Background()

    def add_routes(self, app: web.Application, path: str = "/wecom/bot") -> None:
        add_callback_route(app, "GET", path, self.verify, precheck=self._first, read_body=False)
        add_callback_route(app, "POST", path, self.receive, precheck=self._first)

    def _first(self, request: web.Request) -> None:
        self._checks.precheck(request.query, sealed=True)

    async def start(self) -> None:
        self._background.every(3600, partial(self.streams.prune, older_than=KEEP_STREAMS))

    async def stop(self) -> None:
        await self._background.close()
        await self._http.aclose()

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
        reply = await self._reply(push)
        if reply is None:
            return web.Response(text="")
        now = str(int(self._clock()))
        sealed = self._crypto.seal(orjson.dumps(reply), timestamp=now, nonce=nonce)
        envelope = {"encrypt": sealed.encrypt, "msgsignature": sealed.signature,
                    "timestamp": int(now), "nonce": nonce}  # fmt: skip
        return web.Response(body=orjson.dumps(envelope), content_type="application/json")

    async def _reply(self, push: BotPush) -> dict[str, Any] | None:
        if push.kind == "stream":  # a refresh: the newest text, wherever it was written
            stream = await self.streams.get(push.stream_id)
            if stream is None:
                return stream_reply(push.stream_id, "", finished=True)
            return stream_reply(stream.stream_id, stream.content, finished=stream.finished)
        if push.kind == "event":
            return await self._welcome(push.bot_id) if push.event == "enter_chat" else None
        if not push.msg_id:
            raise CallbackRejected("AI bot message without msgid", status=400)
        stream, created = await self.streams.open(
            f"{push.bot_id}:{push.msg_id}", uuid.uuid4().hex, response_url=push.response_url
        )
        if created:  # WeCom may call twice for one message: the second joins the first stream
            self._background.spawn(self._answer(push, stream))
        return stream_reply(stream.stream_id, stream.content, finished=stream.finished)

    async def _answer(self, push: BotPush, stream: StoredStream) -> None:
        reply = WeComBotReply(
            self.streams, stream, http=self._http, window=self.stream_window, clock=self._clock
        )
        incoming = to_incoming(push, text=push.text, per_chat=self._per_chat, locale=self._locale)
        incoming = self.dispatcher.routing.apply(incoming)  # routing: app and locale
        texts = self.dispatcher.texts
        if not incoming.text and not incoming.attachments:
            await reply.fail("", texts.get("wechat_unsupported", self._locale))
            return
        try:
            self.dispatcher.submit(incoming, reply)
        except RuntimeError:  # shutting down: close the stream rather than leave WeCom polling
            await reply.fail("", texts.get("unavailable", self._locale))

    async def _welcome(self, bot_id: str) -> dict[str, Any] | None:
        app = self.dispatcher.routing.resolve(PLATFORM, workspace=bot_id).app  # routing
        try:
            statement = str(
                (await self.dispatcher.dify_for(app).parameters()).get("opening_statement") or ""
            )
        except DifyError as exc:
            log.warning("no opening statement: %s", exc)
            return None
        return {"msgtype": "text", "text": {"content": statement}} if statement else None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackRejected("AI bot body is not JSON", status=400) from None


def build_wecom_bot(core: Core, app: web.Application) -> WeComBotAdapter:
    """The adapter from the settings, its routes added to ``app``."""
    core.dispatcher.texts.add(WECHAT_TEXTS)
    s = core.settings
    if s.wecom_bot_token is None or s.wecom_bot_encoding_aes_key is None:
        raise ConfigError("WECOM_BOT_TOKEN and WECOM_BOT_ENCODING_AES_KEY are both needed")
    # The AI bot's receive id is documented as empty; not checking it keeps us working if it
    # is not (the signature, keyed by the token, authenticates every callback anyway).
    token = s.wecom_bot_token.get_secret_value()
    checks = CallbackChecks(
        token=token,
        crypto=MessageCrypto(token, s.wecom_bot_encoding_aes_key.get_secret_value(), None),
        seen=SeenCallbacks(core.engine),
        scope="wecom_bot",
    )
    adapter = WeComBotAdapter(
        core.dispatcher,
        checks=checks,
        streams=StreamStore(core.engine),
        http=meter(build_http(str(s.wecom_api_base)), core.metrics, PLATFORM),  # metrics
        locale=s.wechat_locale,
        per_chat=s.conversation_scope == "channel",
    )
    if core.files is not None:
        core.files.intake.sources[PLATFORM] = BotMediaFiles(
            core.files.fetch,
            s.wecom_bot_encoding_aes_key.get_secret_value(),
            api_base=str(s.wecom_api_base),
        )
    adapter.add_routes(app)
    return adapter

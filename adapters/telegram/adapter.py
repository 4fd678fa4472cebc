"""The Telegram adapter: updates in (long polling, or a webhook at ``POST /telegram``), each
recorded in the journal by its ``update_id`` and answered once, on any replica.

Long polling is the default: ``getUpdates`` held up to TELEGRAM_POLL_TIMEOUT seconds, the offset
moved past an update only once the journal has it. With TELEGRAM_WEBHOOK_URL the bot calls
``setWebhook`` at start (with the secret and the update types it handles) and takes updates at
``POST /telegram``, refusing any request whose ``X-Telegram-Bot-Api-Secret-Token`` is not the
secret. Telegram resends an update until it gets a 2xx, so a duplicate is answered 200 and
dropped by the journal.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from adapters.spec import Services
from adapters.telegram.api import TelegramApi, TelegramError
from adapters.telegram.files import TelegramFiles
from adapters.telegram.formatting import escape, to_html
from adapters.telegram.forms import FormPresses
from adapters.telegram.inbound import PLATFORM, BotIdentity, Update, to_incoming, to_update
from adapters.telegram.keyboard import AnswerMemory, Keyboard, answer_keyboard, to_action
from adapters.telegram.pacer import TelegramPacer
from adapters.telegram.reply import Place, ReplyKit, TelegramReply, send_message
from adapters.telegram.settings import TelegramSettings, parse_group_scopes
from adapters.webhooks import guard_of
from bot.contract import Allowlist, Delivery, Inbox, Platform
from bot.errors import (
    CallbackRejected,
    ConfigError,
    DifyError,
    ShuttingDown,
    StartupError,
    StoreError,
)
from bot.models import AppFacts
from bot.ops.effort import best_effort, cancelled
from bot.stores import SeenCallbacks

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query", "stopped_message_generation"]
MAX_UPDATE = 1024 * 1024  # an update is a few KB; Telegram's own cap on a message is far below
Sleep = Callable[[float], Awaitable[None]]


class TelegramAdapter:
    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        api: TelegramApi,
        kit: ReplyKit,
        settings: TelegramSettings,
        *,
        seen: SeenCallbacks,
        scope_override: str = "",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.inbox, self.api, self.kit = inbox, api, kit
        self._seen = seen
        self._settings = settings
        self._scopes = parse_group_scopes(settings.telegram_group_scopes)
        self._scope_override = {"channel": "chat"}.get(scope_override, scope_override)
        self._sleep = sleep
        secret = settings.telegram_webhook_secret
        self._secret = secret.get_secret_value().encode() if secret is not None else b""
        self.bot: BotIdentity | None = None
        self._forms = FormPresses(inbox, kit, self._answer_press)
        self._poller: asyncio.Task[None] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def add_routes(self, app: web.Application, path: str = "/telegram") -> None:
        route = guard_of(app).route(self.receive, max_body=MAX_UPDATE, precheck=self._precheck)
        app.router.add_post(path, route)

    async def start(self) -> None:
        try:
            await self._open()
        except BaseException:
            await self.api.aclose()  # a start that failed leaves no connection open
            raise

    async def _open(self) -> None:
        me = await self._at_start("getMe", self.api.call("getMe"))
        self.bot = BotIdentity(int(me["id"]), str(me.get("username") or ""))
        self.kit.memory.bot_id = self.bot.id
        await self._register_commands()
        if self._settings.telegram_webhook_url is not None:
            await self._at_start("setWebhook", self._set_webhook())
            log.info("Telegram: @%s takes updates by webhook", self.bot.username)
            return
        # A webhook left set makes getUpdates fail with 409: polling replaces it.
        deleting = self.api.call("deleteWebhook", {"drop_pending_updates": False})
        await self._at_start("deleteWebhook", deleting)
        self._poller = asyncio.create_task(self._poll(), name="telegram-polling")
        log.info("Telegram: @%s takes updates by long polling", self.bot.username)

    async def _at_start(self, method: str, call: Awaitable[Any]) -> Any:
        """A call startup needs, its refusal as the one-line error that names the fix."""
        try:
            return await call
        except TelegramError as exc:
            if exc.status == 401:
                raise ConfigError(
                    "TELEGRAM_BOT_TOKEN: Telegram refused the token (401); copy it again from "
                    "@BotFather (/token)"
                ) from None
            if method == "setWebhook" and exc.status == 400:
                raise ConfigError(f"TELEGRAM_WEBHOOK_URL: {exc.message}") from None
            raise StartupError(f"Telegram: {exc.message}") from None

    async def stop(self) -> None:
        """No more updates (long polling ends; in webhook mode the listener stops)."""
        await cancelled(self._poller)

    async def close(self) -> None:
        """After the answers in flight: their typing indicators, then the client."""
        await cancelled(*self.kit.typing)
        await self.api.aclose()

    async def _set_webhook(self) -> None:
        """setWebhook allows about one call a second (replicas starting together share it):
        a 429 is waited out."""
        url = str(self._settings.telegram_webhook_url)
        params = {"url": url, "secret_token": self._secret.decode(),
                  "allowed_updates": ALLOWED_UPDATES}  # fmt: skip

        async def call() -> Any:
            return await self.api.call("setWebhook", params)

        await self.kit.pacer.send(0, call, lane="setWebhook")

    async def _register_commands(self) -> None:
        """``setMyCommands`` in every language the bot speaks (the default list in English)."""
        for language in ("", "ja", "zh"):
            locale = language or "en"
            commands = [
                {
                    "command": name,
                    "description": self.inbox.text(f"telegram_{name}_command", locale),
                }
                for name in ("new", "help", "ask")
            ]
            try:
                await self.api.call(
                    "setMyCommands", {"commands": commands, "language_code": language or None}
                )
            except TelegramError as exc:
                log.warning("setMyCommands refused: %s", exc.message)

    # ---- long polling -------------------------------------------------------------------------

    async def _poll(self) -> None:
        offset, failures = 0, 0
        timeout = self._settings.telegram_poll_timeout
        while True:
            params = {"offset": offset, "timeout": timeout, "allowed_updates": ALLOWED_UPDATES}
            try:
                updates = await self.api.call("getUpdates", params, timeout=timeout + 15)
            except TelegramError as exc:
                failures += 1
                await self._sleep(self._poll_pause(exc, failures))
                continue
            failures = 0
            for raw in updates if isinstance(updates, list) else ():
                try:
                    await self.handle(raw)
                except (StoreError, ShuttingDown) as exc:  # not recorded: get it again
                    log.warning("Telegram update %s not recorded (%s); fetching it again",
                                raw.get("update_id"), exc)  # fmt: skip
                    await self._sleep(1.0)
                    break
                except Exception:  # this update's boundary: the next ones still come
                    log.exception("Telegram update %s failed", raw.get("update_id"))
                offset = max(offset, int(raw.get("update_id") or 0) + 1)

    def _poll_pause(self, exc: TelegramError, failures: int) -> float:
        if exc.status == 409:  # another process polls (or a webhook was set): it gets them
            log.warning("%s", exc.message)
            return 5.0
        log.warning("getUpdates failed (%s); retrying", exc.message)
        return exc.retry_after or min(30.0, 0.5 * 2**failures)

    # ---- webhook ------------------------------------------------------------------------------

    def _precheck(self, request: web.Request) -> None:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not self._secret or not hmac.compare_digest(given, self._secret):
            raise CallbackRejected("Telegram update without the webhook secret", status=401)

    async def receive(self, request: web.Request, body: bytes) -> web.StreamResponse:
        try:
            raw = json.loads(body)
        except ValueError:
            raise CallbackRejected("Telegram update is not JSON", status=400) from None
        try:
            await self.handle(raw)
        except ValueError as exc:
            raise CallbackRejected(str(exc), status=400) from None
        except (ShuttingDown, StoreError):  # Telegram sends it again, maybe to another replica
            return web.Response(status=503, headers={"Retry-After": "1"})
        except Exception:  # this update's boundary: recorded or not, resending will not help
            log.exception("Telegram update %s failed", raw.get("update_id"))
        return web.Response(text="")

    # ---- one update -----------------------------------------------------------------------------

    async def handle(self, raw: Any) -> None:
        """Record and act on one update (ValueError: not an update)."""
        assert self.bot is not None, "start() first"
        update = to_update(raw, self.bot)
        if update.kind == "ask":
            await self._ask(update)
        elif update.kind == "command":
            await self._command(update)
        elif update.kind == "press":
            await self._press(update)
        elif update.kind == "stop":
            await self._stop(update)

    def _scope(self, chat: int) -> str:
        return self._scope_override or self._scopes.get(chat) or self._settings.telegram_group_scope

    async def _root(self, update: Update) -> int | None:
        """The reply chain a group question belongs to (thread scope, outside forum topics)."""
        if not update.in_group or update.thread_id is not None:
            return None
        memory, chat = self.kit.memory, update.chat_id
        root = update.message_id
        if update.reply_to is not None:
            root = await memory.root(chat, update.reply_to) or update.reply_to
        await memory.remember_root(chat, update.message_id, root)
        return root

    def _place(self, update: Update, root: int | None) -> Place:
        reply_to = update.message_id if update.in_group else None
        return Place(update.chat_id, update.in_group, update.thread_id, reply_to, root)

    async def _ask(self, update: Update, *, root: int | None = None) -> None:
        assert self.bot is not None
        root = root if root is not None else await self._root(update)
        message = to_incoming(update, self.bot, scope=self._scope(update.chat_id), root=root)
        await self.inbox.accept(message, where=self._place(update, root).to_record())

    async def _command(self, update: Update) -> None:
        """/start, /new, /help: the bot's own, recorded (a resent update is dropped) and never
        sent to Dify."""
        assert self.bot is not None
        root = await self._root(update)
        message = to_incoming(update, self.bot, scope=self._scope(update.chat_id), root=root)
        accepted = await self.inbox.accept(message, where={}, answer=False)
        if not accepted.new:
            return
        place = self._place(update, root)
        if update.command == "new":
            await self.inbox.reset(message.key)
            await self._say(place, to_html(self.inbox.text("reset", update.locale)))
        elif update.command == "start":
            await self._welcome(place, update)
        else:
            await self._say(place, to_html(self.inbox.text("telegram_help", update.locale)))

    async def _welcome(self, place: Place, update: Update) -> None:
        """/start: the app's opening statement and its starter questions as buttons."""
        facts = AppFacts()
        with best_effort("read the app's opening statement", log):
            facts = await self.inbox.facts(PLATFORM, channel=str(update.chat_id))
        text = facts.opening_statement or self.inbox.text("telegram_welcome", update.locale)
        questions = list(facts.starter_questions[:5])
        markup = answer_keyboard(labels=None, questions=questions)
        sent = await self._say(place, to_html(text), markup=markup)
        if questions and sent:
            await self.kit.memory.remember_questions(place.chat, sent, questions)

    async def _say(self, place: Place, html: str, *, markup: Keyboard | None = None) -> int:
        """One message of the bot's own; its id (0 when Telegram refused it)."""
        try:
            sent = await send_message(self.kit, place, html, markup=markup)
        except TelegramError as exc:
            log.warning("message refused in chat %s: %s", place.chat, exc.message)
            return 0
        return int((sent or {}).get("message_id") or 0)

    async def _stop(self, update: Update) -> None:
        """A draft's stop button: Dify stops the answer (if it runs here), which then ends
        with what it had and a note that it was stopped."""
        assert self.bot is not None
        key = to_incoming(update, self.bot, scope=self._scope(update.chat_id)).key
        try:
            stopped = await self.inbox.stop(key)
        except DifyError as exc:
            log.warning("Dify refused to stop: %s", exc)
            return
        log.info("Telegram stop button: %s", "stopped" if stopped else "nothing ran here")

    # ---- buttons --------------------------------------------------------------------------------

    async def _press(self, update: Update) -> None:
        """Every press is answered (answerCallbackQuery) once: a query seen before, on any
        replica, is dropped. A suggested question is asked for whoever pressed it, where it
        was offered (in a group: in the chain of the answer that offered it)."""
        if not await self._seen.first_time(PLATFORM, update.callback_id):
            return
        action = to_action(update.callback_data)
        if action.kind == "form":
            await self._forms.pressed(update, action)
            return
        if action.kind in ("like", "dislike"):
            await self._answer_press(update, await self._feedback(update, action.kind))
            return
        question = None
        if action.kind == "ask":
            question = await self.kit.memory.question(
                update.chat_id, update.message_id, action.slot
            )
        if not question:
            await self._answer_press(update, self.inbox.text("telegram_gone", update.locale))
            return
        await self._answer_press(update, "")
        asked = replace(update, kind="ask", text=question, reply_to=update.message_id)
        root = await self._root(asked)
        await self._say(self._place(asked, root), escape(f"❓ {question}"))
        await self._ask(asked, root=root)

    async def _feedback(self, update: Update, rating: str) -> str:
        """Dify message feedback for the answer whose button was pressed; what to tell."""
        known = await self.kit.memory.answer(update.chat_id, update.message_id)
        if known is None:
            return self.inbox.text("telegram_gone", update.locale)
        message_id, user, app = known
        try:
            await self.inbox.feedback(app, message_id, user=user, rating=rating)
        except DifyError as exc:
            log.warning("Dify refused feedback: %s", exc)
            return self.inbox.text("error", update.locale)
        return self.inbox.text("telegram_thanks", update.locale)

    async def _answer_press(self, update: Update, text: str, *, alert: bool = False) -> None:
        params = {"callback_query_id": update.callback_id, "text": text[:200] or None,
                  "show_alert": alert or None}  # fmt: skip
        try:
            await self.api.call("answerCallbackQuery", params, timeout=10)
        except TelegramError as exc:  # "query is too old": seconds have passed
            log.info("answerCallbackQuery refused: %s", exc.message)

    # ---- replies ------------------------------------------------------------------------------

    def reply(self, delivery: Delivery) -> TelegramReply:
        """``bot.contract.Platform.reply``: a new answer, or one taken over (then it edits the
        messages the earlier attempt posted)."""
        state = delivery.state or {}
        resume = [int(m) for m in state.get("messages", ()) if int(m)]
        return TelegramReply(
            self.kit,
            Place.from_record(delivery.where),
            entry_id=delivery.entry_id,
            locale=delivery.message.locale,
            save=delivery.save,
            resume=resume,
            form_shown=bool(state.get("form")),
        )


def build_telegram(settings: TelegramSettings, services: Services) -> Platform:
    """The platform from the settings, its webhook route added to the web app."""
    assert settings.telegram_bot_token is not None
    token = settings.telegram_bot_token.get_secret_value()
    api = TelegramApi(token, settings.telegram_base, metrics=services.metrics)
    # The bot's id (the token's public part) names the account every replica shares.
    pacer = TelegramPacer(
        budgets=services.budgets,
        bot=token.partition(":")[0],
        metrics=services.metrics,
        clock=services.clock,
        sleep=services.sleep,
    )
    kit = ReplyKit(
        api=api,
        pacer=pacer,
        memory=AnswerMemory(services.threads, bot_id=0),
        text=services.inbox.text,
        suggest=services.inbox.suggestions,
        files=services.answer_files,
        drafts=settings.telegram_drafts,
        feedback=settings.telegram_feedback_buttons,
    )
    adapter = TelegramAdapter(
        services.inbox, api, kit, settings, seen=services.callbacks,
        scope_override=services.conversation_scope, sleep=services.sleep,
    )  # fmt: skip
    if settings.telegram_webhook_url is not None:
        adapter.add_routes(services.web)
    local_server = settings.telegram_base != "https://api.telegram.org"
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=TelegramFiles(api, max_download=None if local_server else 20 * 1024 * 1024),
        allowlist=Allowlist.of(
            channels=settings.telegram_allowed_chats, users=settings.telegram_allowed_users
        ),
    )

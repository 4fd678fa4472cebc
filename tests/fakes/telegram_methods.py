"""The Bot API methods the fake answers, with the server's own error descriptions.

Descriptions marked "server" are the Bot API server's or tdlib's text (tdlib/telegram-bot-api
Client.cpp, tdlib MessageEntity.cpp/BotCommand.cpp/FileLoaderUtils.cpp) with the server's
formatting: "Bad Request: " and the first letter lowered. MTProto errors (BUTTON_DATA_INVALID,
BOT_COMMAND_INVALID, TEXTDRAFT_PEER_INVALID, IMAGE_PROCESS_FAILED, PHOTO_INVALID_DIMENSIONS) pass
through in capitals, as reported by bot developers. Two texts are guesses and say so below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.telegram_flood import FloodControl
from tests.fakes.telegram_html import EntityParseError, parse_html, trim
from tests.fakes.telegram_store import (
    MAX_DOWNLOAD,
    MAX_PHOTO,
    PRIVATE,
    BotState,
    Chat,
    Draft,
    Message,
    StoredFile,
    image_size,
)
from tests.fakes.telegram_updates import LONG_POLL_MAX_TIMEOUT, Conflict, UpdateQueue, WebhookPusher

MESSAGE_LIMIT = 4096  # Unicode code points after entity parsing (tdlib utf8_length)
CAPTION_LIMIT = 1024
RAW_TEXT_LIMIT = 1 << 15  # bytes of text before parsing: "Text is too long"
CALLBACK_TEXT_LIMIT = 200
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
COMMAND = re.compile(r"[a-z0-9_]+")
SECRET = re.compile(r"[A-Za-z0-9_-]*")
WEBHOOK_PORTS = (80, 88, 443, 8443)


class ApiError(Exception):
    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def flood_error(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


@dataclass
class Upload:
    """A file part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Args:
    values: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)

    def text(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else json.dumps(value)

    def integer(self, name: str, default: int = 0) -> int:
        """td::to_integer: an optional sign and leading digits, anything else is 0."""
        match = re.match(r"\s*(-?\d+)", self.text(name))
        return int(match.group(1)) if match else default

    def flag(self, name: str) -> bool:
        return self.text(name).lower() in ("true", "1")

    def json(self, name: str, error: str) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: {error}") from None


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class BotApi:
    """One coroutine per method; each returns the ``result`` or raises ApiError."""

    def __init__(
        self,
        state: BotState,
        *,
        flood: FloodControl,
        queue: UpdateQueue,
        webhook: WebhookPusher,
        clock: Callable[[], float],
        wall: Callable[[], float],
        https_webhooks_only: bool,
        callback_window: float,
    ) -> None:
        self.state, self.flood, self.queue, self.webhook = state, flood, queue, webhook
        self.clock, self.wall = clock, wall
        self.https_webhooks_only = https_webhooks_only
        self.callback_window = callback_window
        self.rate_limited: list[tuple[str, int]] = []  # (method, chat_id) refused by the limits
        self._next_set_webhook = 0.0
        self.methods: dict[str, Callable[[Args], Awaitable[Any]]] = {
            name.removeprefix("m_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("m_")
        }

    # ---- shared checks ------------------------------------------------------------------------

    def chat(self, args: Args, *, write: bool = True) -> Chat:
        raw = args.text("chat_id").strip()
        if not raw:
            raise bad("chat_id is empty")
        if raw.startswith("@"):
            chat = self.state.chat_by_username(raw[1:])
        else:
            chat = self.state.chats.get(int(raw)) if re.fullmatch(r"-?\d+", raw) else None
        if chat is None:
            raise bad("chat not found")
        if write and chat.blocked:
            if chat.type == PRIVATE:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat")
        return chat

    def thread(self, chat: Chat, args: Args) -> int | None:
        thread_id = args.integer("message_thread_id") or None
        if (
            thread_id is not None
            and chat.is_forum
            and (thread_id == 1 or thread_id not in chat.topics)
        ):
            raise bad("message thread not found")  # server; the General topic (1) is refused too
        return thread_id

    def formatted(
        self, args: Args, *, field: str, entities_field: str, limit: int, kind: str
    ) -> tuple[str, list[dict[str, Any]]]:
        raw = args.text(field)
        if len(raw.encode()) > RAW_TEXT_LIMIT:
            raise bad("text is too long")
        mode = args.text("parse_mode").lower()
        if mode in ("", "none"):
            entities = args.json(entities_field, f"can't parse {entities_field} JSON object")
            text, parsed = raw, list(entities or [])
        elif mode == "html":
            try:
                text, parsed = parse_html(raw)
            except EntityParseError as exc:
                raise bad(f"can't parse entities: {exc}") from None
        elif mode in ("markdown", "markdownv2"):
            raise bad(f"FakeTelegram models parse_mode HTML only, not {mode}")  # not Telegram's
        else:
            raise bad("unsupported parse_mode")  # server
        text, parsed = trim(text, parsed)
        if len(text) > limit:
            raise bad("message is too long" if kind == "message" else "message caption is too long")
        return text, parsed

    def reply_target(self, chat: Chat, args: Args) -> Message | None:
        params = args.json("reply_parameters", "can't parse reply parameters JSON object")
        if params is None and args.integer("reply_to_message_id"):
            params = {
                "message_id": args.integer("reply_to_message_id"),
                "allow_sending_without_reply": args.flag("allow_sending_without_reply"),
            }
        if params is None:
            return None
        if not isinstance(params, dict):
            raise bad("object expected as reply parameters")
        chat_id = int(params.get("chat_id") or chat.id)
        target = self.state.messages.get((chat_id, int(params.get("message_id") or 0)))
        if target is None and not params.get("allow_sending_without_reply"):
            raise bad("message to be replied not found")
        return target

    def markup(self, args: Args) -> dict[str, Any] | None:
        markup = args.json("reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad("object expected as reply markup")
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                _check_button(button)
        return markup

    def limited(self, method: str, chat: Chat) -> None:
        retry_after = self.flood.message(chat.id, is_group=chat.is_group)
        if retry_after is not None:
            self.rate_limited.append((method, chat.id))
            raise flood_error(retry_after)

    def post(self, chat: Chat, **fields: Any) -> Message:
        message = Message(
            chat,
            self.state.new_message_id(chat.id),
            self.state.bot_user,
            int(self.wall()),
            **fields,
        )
        message.history.append(message.body)
        self.state.supersede_drafts(chat.id, message.thread_id)
        return self.state.store(message)

    def editable(self, args: Args) -> Message:
        if args.text("inline_message_id"):
            raise bad("FakeTelegram does not model inline messages")  # not Telegram's
        chat = self.chat(args)
        message = self.state.messages.get((chat.id, args.integer("message_id")))
        if message is None:
            raise bad("message to edit not found")
        if not message.from_bot:
            raise bad("message can't be edited")
        return message

    # ---- identity, commands ---------------------------------------------------------------

    async def m_getme(self, args: Args) -> Any:
        return self.state.bot

    async def m_setmycommands(self, args: Args) -> Any:
        raw = args.json("commands", "can't parse commands JSON object")
        if raw is not None and not isinstance(raw, list):
            raise bad("expected an Array of BotCommand")
        commands = [_command(item) for item in raw or []]
        if len(commands) > 100:
            raise bad("BOT_COMMANDS_TOO_MUCH")
        self.state.commands[(_scope(args), args.text("language_code"))] = commands
        return True

    async def m_getmycommands(self, args: Args) -> Any:
        return self.state.commands.get((_scope(args), args.text("language_code")), [])

    async def m_deletemycommands(self, args: Args) -> Any:
        self.state.commands.pop((_scope(args), args.text("language_code")), None)
        return True

    # ---- sending and editing --------------------------------------------------------------

    async def m_sendmessage(self, args: Args) -> Any:
        if not args.text("text"):
            raise bad("message text is empty")  # server
        text, entities = self.formatted(
            args, field="text", entities_field="entities", limit=MESSAGE_LIMIT, kind="message"
        )
        if not text:
            raise bad("text must be non-empty")  # tdlib, after trimming
        markup = self.markup(args)
        chat = self.chat(args)
        thread_id = self.thread(chat, args)
        reply_to = self.reply_target(chat, args)
        self.limited("sendMessage", chat)
        message = self.post(
            chat,
            text=text,
            entities=entities,
            reply_to=reply_to,
            thread_id=thread_id,
            reply_markup=markup,
        )
        message.sent_html = args.text("text") if args.text("parse_mode").lower() == "html" else None
        return message.shape()

    async def m_editmessagetext(self, args: Args) -> Any:
        if not args.text("text"):
            raise bad("message text is empty")
        text, entities = self.formatted(
            args, field="text", entities_field="entities", limit=MESSAGE_LIMIT, kind="message"
        )
        markup = self.markup(args)
        message = self.editable(args)
        if message.text is None:
            raise bad("there is no text in the message to edit")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        self.limited("editMessageText", message.chat)
        # An edit without reply_markup takes the inline keyboard away.
        message.text, message.entities, message.reply_markup = text, entities, markup
        return self._edited(message, args)

    async def m_editmessagereplymarkup(self, args: Args) -> Any:
        markup = self.markup(args)
        message = self.editable(args)
        if markup == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        self.limited("editMessageReplyMarkup", message.chat)
        message.reply_markup = markup
        return self._edited(message, args)

    def _edited(self, message: Message, args: Args) -> Any:
        message.edit_date = int(self.wall())
        message.edits += 1
        message.history.append(message.body)
        if args.text("parse_mode").lower() == "html":
            message.sent_html = args.text("text")
        return message.shape()

    async def m_deletemessage(self, args: Args) -> Any:
        chat = self.chat(args)
        if self.state.messages.pop((chat.id, args.integer("message_id")), None) is None:
            raise bad("message to delete not found")
        return True

    async def m_sendmessagedraft(self, args: Args) -> Any:
        text, entities = self.formatted(
            args, field="text", entities_field="entities", limit=MESSAGE_LIMIT, kind="message"
        )
        chat = self.chat(args)
        if chat.type != PRIVATE:
            raise bad("TEXTDRAFT_PEER_INVALID")  # what Telegram answers for groups
        draft_id = args.integer("draft_id")
        if draft_id == 0:
            raise bad("draft_id must be non-zero")  # a guess: the docs only say "must be non-zero"
        thread_id = self.thread(chat, args)
        retry_after = self.flood.draft(chat.id)
        if retry_after is not None:
            self.rate_limited.append(("sendMessageDraft", chat.id))
            raise flood_error(retry_after)
        key = (chat.id, thread_id, draft_id)
        draft = self.state.drafts.get(key)
        if draft is None or draft.superseded:
            draft = self.state.drafts[key] = Draft(chat.id, thread_id, draft_id, text, entities)
        draft.text, draft.entities, draft.updated_at = text, entities, self.clock()
        draft.can_stop, draft.keep_on_stop = args.flag("can_stop"), args.flag("keep_on_stop")
        draft.frames.append(text)
        return True

    async def m_sendchataction(self, args: Args) -> Any:
        action = args.text("action")
        if action not in CHAT_ACTIONS:
            raise bad("wrong parameter action in request")  # server
        chat = self.chat(args)
        self.state.chat_actions.append((chat.id, action, self.thread(chat, args)))
        return True

    # ---- files ----------------------------------------------------------------------------

    async def m_sendphoto(self, args: Args) -> Any:
        return await self._send_file(args, "photo")

    async def m_senddocument(self, args: Args) -> Any:
        return await self._send_file(args, "document")

    async def m_sendvoice(self, args: Args) -> Any:
        return await self._send_file(args, "voice")

    async def _send_file(self, args: Args, kind: str) -> Any:
        caption, entities = self.formatted(
            args,
            field="caption",
            entities_field="caption_entities",
            limit=CAPTION_LIMIT,
            kind="caption",
        )
        markup = self.markup(args)
        stored = self._input_file(args, kind)
        chat = self.chat(args)
        thread_id = self.thread(chat, args)
        reply_to = self.reply_target(chat, args)
        self.limited(f"send{kind.capitalize()}", chat)
        message = self.post(
            chat,
            caption=caption or None,
            entities=entities,
            media=stored,
            reply_to=reply_to,
            thread_id=thread_id,
            reply_markup=markup,
        )
        return message.shape()

    def _input_file(self, args: Args, kind: str) -> StoredFile:
        value = args.text(kind)
        upload = args.files.get(kind)
        if value.startswith("attach://"):
            upload = args.files.get(value.removeprefix("attach://"))
        if upload is not None:
            return self._store_upload(upload, kind)
        if not value:
            raise bad(f"there is no {kind} in the request")  # server
        if value.startswith(("http://", "https://")):
            raise bad("failed to get HTTP URL content")  # FakeTelegram fetches no URLs
        stored = self.state.files.by_id.get(value)
        if stored is None:
            raise bad("wrong remote file identifier specified: can't unserialize it")
        if stored.kind != kind:
            raise bad(f"can't use file of type {stored.kind.capitalize()} as {kind.capitalize()}")
        return stored

    def _store_upload(self, upload: Upload, kind: str) -> StoredFile:
        if not upload.data:
            raise bad("file must be non-empty")  # tdlib
        if kind == "photo":
            _check_photo(upload.data)
        mime = upload.content_type if upload.content_type != "application/octet-stream" else None
        return self.state.files.add(
            kind, upload.data, mime_type=mime, file_name=upload.filename or None
        )

    async def m_getfile(self, args: Args) -> Any:
        file_id = args.text("file_id")
        if not file_id:
            raise bad("file_id not specified")  # server
        stored = self.state.files.by_id.get(file_id)
        if stored is None:
            raise bad("invalid file_id")  # server
        if stored.size > MAX_DOWNLOAD:
            raise bad("file is too big")  # server
        shaped = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }
        return shaped

    # ---- callback queries -----------------------------------------------------------------

    async def m_answercallbackquery(self, args: Args) -> Any:
        query = self.state.callbacks.get(args.text("callback_query_id"))
        expired = query is not None and self.clock() - query.pushed_at > self.callback_window
        if query is None or query.answer is not None or expired:
            raise bad(QUERY_TOO_OLD)  # server
        text = args.text("text")
        if len(text) > CALLBACK_TEXT_LIMIT:
            raise bad("MESSAGE_TOO_LONG")  # a guess: MTProto's name for an over-long text
        query.answer = {
            "text": text,
            "show_alert": args.flag("show_alert"),
            "url": args.text("url"),
            "cache_time": args.integer("cache_time"),
        }
        return True

    # ---- updates --------------------------------------------------------------------------

    async def m_getupdates(self, args: Args) -> Any:
        if self.webhook.active:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        self.queue.set_allowed(args.json("allowed_updates", "can't parse allowed_updates"))
        limit = min(max(args.integer("limit", 100), 1), 100)
        timeout = min(max(args.integer("timeout"), 0), LONG_POLL_MAX_TIMEOUT)
        try:
            return await self.queue.get_updates(args.integer("offset"), limit, timeout)
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None

    async def m_setwebhook(self, args: Args) -> Any:
        url = args.text("url")
        now = self.clock()
        if url and now < self._next_set_webhook:
            raise flood_error(1)  # server: one setWebhook with a URL per second
        if url:
            self._next_set_webhook = now + 1
        secret = args.text("secret_token") if url else ""
        max_connections = min(max(args.integer("max_connections", 40), 1), 100) if url else 0
        allowed = args.json("allowed_updates", "can't parse allowed_updates")
        same = (url, secret, max_connections) == (
            self.webhook.url,
            self.webhook.secret,
            self.webhook.max_connections if url else 0,
        )
        if same and not args.flag("drop_pending_updates"):
            self.queue.set_allowed(allowed)
            return _described(
                True, "Webhook is already set" if url else "Webhook is already deleted"
            )
        if url:
            self._check_webhook(url, secret)
            self.queue.terminate_poll("Conflict: terminated by setWebhook request")
        if args.flag("drop_pending_updates"):
            self.queue.pending.clear()
        self.queue.set_allowed(allowed)
        was_set = self.webhook.active
        await self.webhook.stop()
        if not url:
            return _described(
                True, "Webhook was deleted" if was_set else "Webhook is already deleted"
            )
        self.webhook.start(url, secret, max_connections)
        return _described(True, "Webhook was set")

    async def m_deletewebhook(self, args: Args) -> Any:
        return await self.m_setwebhook(
            Args({"drop_pending_updates": args.text("drop_pending_updates")})
        )

    def _check_webhook(self, url: str, secret: str) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad("invalid webhook URL specified")  # server
        if len(secret) > 256:
            raise bad("secret token is too long")  # server
        if not SECRET.fullmatch(secret):
            raise bad("secret token contains unallowed characters")  # server
        if self.https_webhooks_only and parts.scheme != "https":
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")  # server
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.https_webhooks_only and port not in WEBHOOK_PORTS:
            raise bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")

    async def m_getwebhookinfo(self, args: Args) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.queue.pending),
        }
        if self.webhook.last_error_date:
            info["last_error_date"] = self.webhook.last_error_date
            info["last_error_message"] = self.webhook.last_error_message
        if self.webhook.active:
            info["max_connections"] = self.webhook.max_connections
            info["ip_address"] = "127.0.0.1"
        if self.queue.allowed is not None:
            info["allowed_updates"] = sorted(self.queue.allowed)
        return info


@dataclass
class Described:
    """A result that comes with a ``description`` (setWebhook's "Webhook was set")."""

    result: Any
    description: str


def _described(result: Any, description: str) -> Described:
    return Described(result, description)


def _scope(args: Args) -> str:
    scope = args.json("scope", "can't parse BotCommandScope JSON object") or {"type": "default"}
    return json.dumps(scope, sort_keys=True)


def _command(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise bad("can't parse BotCommand: expected an Object")
    command = str(item.get("command", "")).strip().removeprefix("/")
    description = str(item.get("description", "")).strip()
    if not command:
        raise bad("command must be non-empty")  # tdlib
    if len(command) > 32:
        raise bad("command length must not exceed 32")  # tdlib
    if not COMMAND.fullmatch(command):
        raise bad("BOT_COMMAND_INVALID")
    if not description:
        raise bad("command description must be non-empty")  # tdlib
    if len(description) > 256:
        raise bad("command description length must not exceed 256")  # tdlib
    return {"command": command, "description": description}


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad("inlineKeyboardButton must be an Object")
    if not str(button.get("text", "")):
        raise bad("inline keyboard button text must be non-empty")  # tdlib
    data = button.get("callback_data")
    if data is not None and not (1 <= len(str(data).encode()) <= 64):
        raise bad("BUTTON_DATA_INVALID")
    kinds = (
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    )
    if not any(button.get(kind) not in (None, "", False) for kind in kinds):
        raise bad("text buttons are unallowed in the inline keyboard")  # server


def _check_photo(data: bytes) -> None:
    if len(data) > MAX_PHOTO:
        raise bad(
            f"file of size {len(data)} bytes is too big for a photo; "
            f"the maximum size is {MAX_PHOTO} bytes"
        )
    width, height = image_size(data)
    if not width or not height:
        raise bad("IMAGE_PROCESS_FAILED")
    if width + height > 10_000 or max(width, height) > 20 * min(width, height):
        raise bad("PHOTO_INVALID_DIMENSIONS")

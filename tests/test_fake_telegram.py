"""The fake Bot API speaks Telegram's protocol: aiogram, pointed at it, works and fails as it
would against api.telegram.org (auth, sending, HTML, editing, drafts, updates, webhooks, files,
flood limits), and the captured payloads are what aiogram's own models accept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetMe, SendMessage
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.fakes.replies import ManualClock
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram_html import EntityParseError, parse_html

PAYLOADS = Path(__file__).parent / "payloads" / "telegram"
SECRET = "wh-secret_0123456789"
# A 3x2 PNG header is all the fake reads of an image (its size); the rest is opaque bytes.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000030000000208060000") + b"\0" * 64


class LoopbackSession(AiohttpSession):
    """aiogram's session minus the 250 ms sleep its close() takes for TLS connections to drain;
    the fake is plain HTTP on loopback."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def buttons(*data: str) -> InlineKeyboardMarkup:
    """One row of inline buttons labelled and carrying ``data``."""
    row = [InlineKeyboardButton(text=item, callback_data=item) for item in data]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def bot_for(tg: FakeTelegram, token: str | None = None) -> Bot:
    session = LoopbackSession(api=TelegramAPIServer.from_base(tg.base_url))
    return Bot(token or tg.token, session=session)


@asynccontextmanager
async def telegram(**options: Any) -> AsyncIterator[tuple[FakeTelegram, Bot]]:
    """A fake Bot API and an aiogram Bot pointed at it."""
    async with FakeTelegram(**options) as fake:
        bot = bot_for(fake)
        try:
            yield fake, bot
        finally:
            await bot.session.close()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(webhook_retry_scale=0.001) as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    bot = bot_for(tg)
    yield bot
    await bot.session.close()


async def raw(tg: FakeTelegram, path: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(tg.base_url + path, **kwargs) as response,
    ):
        return response.status, await response.json(), response.headers


# ---- auth and the wire --------------------------------------------------------------------


async def test_get_me_and_token_checks(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (tg.bot_id, True, "dify_fake_bot")
    assert me.can_read_all_group_messages is False  # privacy mode on

    stranger = bot_for(tg, f"{tg.bot_id}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(TelegramUnauthorizedError, match=r"^Telegram server says - Unauthorized$"):
        await stranger(GetMe())
    await stranger.session.close()

    old = tg.token
    tg.revoke_token()
    with pytest.raises(TelegramUnauthorizedError):
        await bot.get_me()
    assert (await raw(tg, f"/bot{old}/getMe"))[:2] == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    renewed = bot_for(tg)
    assert (await renewed.get_me()).id == tg.bot_id
    await renewed.session.close()

    for bad_token in ("0123:abc", "no-colon", "x" * 81):
        status, body, _ = await raw(tg, f"/bot{bad_token}/getMe")
        assert (status, body["description"]) == (401, "Unauthorized: invalid token specified")
    status, body, _ = await raw(tg, f"/bot{tg.token}/noSuchMethod")
    assert (status, body["description"]) == (404, "Not Found: method not found")
    assert (await raw(tg, "/something/else"))[:2] == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )


async def test_any_encoding_and_case_is_one_call(tg: FakeTelegram) -> None:
    chat = tg.inbound.private_chat()
    url = f"/bot{tg.token}/"
    as_json = {
        "chat_id": chat.id,
        "text": "<b>json</b>",
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[{"text": "ok", "callback_data": "1"}]]},
    }
    assert (await raw(tg, url + "sendMessage", json=as_json))[0] == 200
    form = {"chat_id": str(chat.id), "text": "form"}
    assert (await raw(tg, url + "SENDMESSAGE", data=form))[0] == 200
    assert (await raw(tg, url + "sendmessage", params={"chat_id": chat.id, "text": "q"}))[0] == 200
    calls = tg.calls_to("sendMessage")
    assert [c.args["text"] for c in calls] == ["<b>json</b>", "form", "q"]
    assert [c.content_type for c in calls] == [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ]
    assert calls[0].args["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "1"
    assert [m.text for m in tg.state.sent_by_bot(chat.id)] == ["json", "form", "q"]


# ---- parse_mode HTML ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>bold</b> &amp; <i>it</i>", "bold & it", [("bold", 0, 4), ("italic", 7, 2)]),
        (
            "<strong>a</strong><em>b</em><ins>c</ins><del>d</del><tg-spoiler>e</tg-spoiler>",
            "abcde",
            [
                ("bold", 0, 1),
                ("italic", 1, 1),
                ("underline", 2, 1),
                ("strikethrough", 3, 1),
                ("spoiler", 4, 1),
            ],
        ),
        ('😀 <a href="https://dify.ai">Dify</a>', "😀 Dify", [("text_link", 3, 4)]),
        ("你好<b>世界</b>", "你好世界", [("bold", 2, 2)]),
        (
            '<pre><code class="language-python">x = 1 &lt; 2</code></pre>',
            "x = 1 < 2",
            [("pre", 0, 9)],
        ),
        ("<code>a &gt; b</code>", "a > b", [("code", 0, 5)]),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ("AT&T &copy; &#169; &#x1F600; &lt", "AT&T &copy; © 😀 <", []),
        ("a > b", "a > b", []),
        ("<b>x</>", "x", [("bold", 0, 1)]),
        ("<b></b>", "", []),
    ],
)
def test_html_is_parsed_as_telegram_does(
    html: str, text: str, entities: list[tuple[str, int, int]]
) -> None:
    got_text, got = parse_html(html)
    assert (got_text, [(e["type"], e["offset"], e["length"]) for e in got]) == (text, entities)


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("line<br>next", 'Unsupported start tag "br" at byte offset 4'),
        ("你好<p>", 'Unsupported start tag "p" at byte offset 6'),  # byte offsets, UTF-8
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<a href="x', "Unclosed start tag at byte offset 0"),
        ("<b =1>x</b>", 'Empty attribute name in the tag "b" at byte offset 0'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ('<tg-emoji emoji-id="0">x</tg-emoji>', "Invalid custom emoji identifier specified"),
    ],
)
def test_bad_html_gets_the_servers_message(html: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html)
    assert str(caught.value) == error


async def test_send_message_html_replies_and_topics(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    question = tg.inbound.text(chat, "hello?")
    assert question is not None
    sent = await bot.send_message(
        chat.id,
        "<b>Dify</b> says 👋 &lt;hi&gt;",
        parse_mode="HTML",
        reply_parameters=ReplyParameters(message_id=question["message"]["message_id"]),
    )
    assert sent.text == "Dify says 👋 <hi>"
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [("bold", 0, 4)]
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "hello?"
    assert tg.state.sent_by_bot(chat.id)[0].sent_html == "<b>Dify</b> says 👋 &lt;hi&gt;"

    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(chat.id, "1 <2>", parse_mode="HTML")
    assert caught.value.message == (
        'Bad Request: can\'t parse entities: Unsupported start tag "2" at byte offset 2'
    )
    with pytest.raises(TelegramBadRequest, match="text must be non-empty"):
        await bot.send_message(chat.id, "<b> </b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(chat.id, "x", reply_parameters=ReplyParameters(message_id=999))
    ok = await bot.send_message(
        chat.id,
        "x",
        reply_parameters=ReplyParameters(message_id=999, allow_sending_without_reply=True),
    )
    assert ok.reply_to_message is None
    with pytest.raises(TelegramBadRequest, match=r"Bad Request: chat not found$"):
        await bot.send_message(123, "nobody")

    forum = tg.inbound.group("Support", forum=True)
    topic = tg.inbound.topic(forum, "Uploads")
    in_topic = await bot.send_message(forum.id, "in the topic", message_thread_id=topic)
    assert (in_topic.message_thread_id, in_topic.is_topic_message) == (topic, True)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(forum.id, "lost", message_thread_id=topic + 50)


async def test_length_is_4096_code_points_after_parsing(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    await bot.send_message(chat.id, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(chat.id, "😀" * 4096)  # 8192 UTF-16 units, 4096 code points
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(chat.id, "a" * 4097)
    assert caught.value.message == "Bad Request: message is too long"
    assert len(tg.state.sent_by_bot(chat.id)) == 2


# ---- editing --------------------------------------------------------------------------------


async def test_edit_message_text_and_not_modified(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="👍", callback_data="fb:up")]]
    )
    sent = await bot.send_message(chat.id, "Thinking…", reply_markup=keyboard)
    edited = await bot.edit_message_text(
        "<b>Answer</b>", chat_id=chat.id, message_id=sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    shown = tg.state.messages[(chat.id, sent.message_id)]
    assert (shown.text, shown.edits, shown.reply_markup) == ("Answer", 1, None)  # keyboard gone
    assert shown.history == ["Thinking…", "Answer"]

    for same in ("<b>Answer</b>", "<strong>Answer</strong>"):  # same text and entities
        with pytest.raises(TelegramBadRequest) as caught:
            await bot.edit_message_text(
                same, chat_id=chat.id, message_id=sent.message_id, parse_mode="HTML"
            )
        assert caught.value.message.startswith("Bad Request: message is not modified: specified")
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=chat.id, message_id=4242)
    question = tg.inbound.text(chat, "mine")
    assert question is not None
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(
            "x", chat_id=chat.id, message_id=question["message"]["message_id"]
        )


# ---- drafts ---------------------------------------------------------------------------------


async def test_message_drafts_stream_then_a_message_replaces_them(
    tg: FakeTelegram, bot: Bot
) -> None:
    chat = tg.inbound.private_chat()
    assert await bot.send_message_draft(chat.id, draft_id=77, text="")  # "Thinking…"
    assert await bot.send_message_draft(
        chat.id, draft_id=77, text="<b>Di</b>", parse_mode="HTML", can_stop=True
    )
    draft = tg.state.drafts[(chat.id, None, 77)]
    assert (draft.frames, draft.text, draft.entities) == (
        ["", "Di"],
        "Di",
        [{"type": "bold", "offset": 0, "length": 2}],
    )
    stop = tg.inbound.stop_generation(chat, 77)
    assert stop is not None
    parsed = Update.model_validate(stop)
    assert parsed.stopped_message_generation is not None
    assert parsed.stopped_message_generation.draft_id == 77

    await bot.send_message(chat.id, "Dify")
    assert draft.superseded
    group = tg.inbound.group()
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_message_draft(group.id, draft_id=1, text="x")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message_draft(chat.id, draft_id=77, text="<x>", parse_mode="HTML")


# ---- flood limits ---------------------------------------------------------------------------


async def test_private_chat_allows_a_burst_then_one_per_second() -> None:
    clock = ManualClock()
    async with telegram(clock=clock) as (tg, bot):
        chat = tg.inbound.private_chat()
        for n in range(3):
            await bot.send_message(chat.id, f"burst {n}")
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.edit_message_text("edit", chat_id=chat.id, message_id=1)
        assert caught.value.retry_after == 1
        assert caught.value.message.endswith(
            "Original description: Too Many Requests: retry after 1"
        )
        assert tg.calls[-1].response == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert tg.rate_limited == [("editMessageText", chat.id)]
        await clock.advance(1.0)
        await bot.edit_message_text("edit", chat_id=chat.id, message_id=1)
        # drafts have a bucket of their own
        for n in range(3):
            await bot.send_message_draft(chat.id, draft_id=5, text=f"d{n}")
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message_draft(chat.id, draft_id=5, text="d3")


async def test_group_gets_20_messages_a_minute() -> None:
    clock = ManualClock()
    async with telegram(clock=clock) as (tg, bot):
        group = tg.inbound.group()
        for n in range(20):
            await bot.send_message(group.id, f"m{n}")
            await clock.advance(1.0)
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(group.id, "one too many")
        assert caught.value.retry_after == 40  # the first of the 20 leaves the window at 60 s
        status, body, headers = await raw(
            tg, f"/bot{tg.token}/sendMessage", json={"chat_id": group.id, "text": "raw"}
        )
        assert (status, body["parameters"], headers["Retry-After"]) == (
            429,
            {"retry_after": 40},
            "40",
        )
        await clock.advance(40.0)
        await bot.send_message(group.id, "again")
        other = tg.inbound.private_chat()
        await bot.send_message(other.id, "other chats are not limited by this group")


async def test_scripted_failures(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    tg.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(chat.id, "x")
    assert caught.value.retry_after == 7
    assert caught.value.message.endswith("Too Many Requests: retry after 7")
    tg.fail_next("sendMessage", 500, "Internal Server Error: restart")
    with pytest.raises(TelegramServerError):
        await bot.send_message(chat.id, "x")
    tg.fail_next("sendMessage", 502, body=b"<html><h1>502 Bad Gateway</h1></html>")
    with pytest.raises(ClientDecodeError):  # a proxy's HTML page: aiogram cannot decode it
        await bot.send_message(chat.id, "x")
    tg.hang_next("sendMessage")
    with pytest.raises(TelegramNetworkError, match="Request timeout error"):
        await bot.send_message(chat.id, "x", request_timeout=0.2)  # type: ignore[arg-type]  # typed int, a float works
    tg.block(chat.id)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(chat.id, "x")
    assert tg.state.sent_by_bot(chat.id) == []


# ---- updates: long polling ------------------------------------------------------------------


async def test_long_poll_is_held_until_an_update_or_the_timeout() -> None:
    clock = ManualClock()
    async with telegram(clock=clock, sleep=clock.sleep) as (tg, bot):
        chat = tg.inbound.private_chat()
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await tg.until(lambda: tg.queue.holding)
        assert not poll.done()
        pushed = tg.inbound.text(chat, "hi")
        updates = await poll
        assert [u.update_id for u in updates] == [pushed["update_id"]]  # type: ignore[index]
        # Confirmed by the next offset: gone for good.
        assert await bot.get_updates(offset=updates[-1].update_id + 1) == []
        poll = asyncio.create_task(bot.get_updates(offset=updates[-1].update_id + 1, timeout=5))
        await tg.until(lambda: tg.queue.holding)
        await clock.advance(5.0)
        assert await poll == []
        # The server's busy-loop guard: the same offset again within 3 s is held for 3 s.
        assert await bot.get_updates(offset=updates[-1].update_id + 1) == []
        poll = asyncio.create_task(bot.get_updates(offset=updates[-1].update_id + 1, timeout=0))
        await tg.until(lambda: tg.queue.holding)
        await clock.advance(3.0)
        assert await poll == []


async def test_second_poller_and_webhook_conflict(tg: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await tg.wait_for("getUpdates")
    other = bot_for(tg)
    second = asyncio.create_task(other.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError) as caught:
        await first
    assert caught.value.message == (
        "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running"
    )
    assert await bot.set_webhook("http://127.0.0.1:9/telegram", secret_token=SECRET)
    with pytest.raises(TelegramConflictError, match="terminated by setWebhook request"):
        await second
    with pytest.raises(TelegramConflictError, match="while webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook()
    assert tg.calls_to("deleteWebhook")[0].response["description"] == "Webhook was deleted"
    await other.session.close()


async def test_offsets_limits_and_allowed_updates(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    pushed = [tg.inbound.text(chat, f"m{n}") for n in range(5)]
    ids = [u["update_id"] for u in pushed if u is not None]
    assert [u.update_id for u in await bot.get_updates(limit=2)] == ids[:2]
    assert [u.update_id for u in await bot.get_updates(offset=-2)] == ids[3:]
    assert [u.update_id for u in await bot.get_updates()] == ids[3:]  # the rest is forgotten

    await bot.get_updates(offset=ids[-1] + 1, allowed_updates=["message"])
    sent = await bot.send_message(
        chat.id,
        "pick",
        reply_markup=buttons("a"),
    )
    press = tg.inbound.press(tg.state.messages[(chat.id, sent.message_id)], "a")
    assert press is None and tg.queue.filtered[-1]["callback_query"]["data"] == "a"
    tg.inbound.add_bot(tg.inbound.group())  # my_chat_member: not allowed either
    assert tg.queue.pending == []


async def test_dispatcher_polling_answers_a_message(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer(f"you said: {message.text}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(
        dispatcher.start_polling(
            bot, handle_signals=False, close_bot_session=False, polling_timeout=30
        )
    )
    chat = tg.inbound.private_chat()
    await tg.wait_for("getUpdates")
    tg.inbound.text(chat, "ping")
    await tg.wait_for("sendMessage")
    await dispatcher.stop_polling()
    await polling
    assert [m.text for m in tg.state.sent_by_bot(chat.id)] == ["you said: ping"]
    assert tg.methods()[:2] == ["getMe", "getUpdates"]


# ---- updates: webhook -----------------------------------------------------------------------


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/telegram"


async def test_webhook_delivery_to_aiogram_with_secret_and_reply(
    tg: FakeTelegram, bot: Bot
) -> None:
    router = Router()
    seen: list[str] = []

    @router.message()
    async def answer(message: Message) -> SendMessage:
        seen.append(message.text or "")
        return message.answer("pong")  # returned: travels back in the webhook's response

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token=SECRET, handle_in_background=False).register(
        app, path="/telegram"
    )
    runner, url = await serve(app)
    try:
        assert await bot.set_webhook(url, secret_token=SECRET, allowed_updates=["message"])
        chat = tg.inbound.private_chat()
        delivery = await tg.deliver(tg.inbound.text(chat, "ping"))
        assert (delivery.status, delivery.reply is not None) == (200, True)
        await tg.wait_for("sendMessage")
        assert seen == ["ping"]
        assert [m.text for m in tg.state.sent_by_bot(chat.id)] == ["pong"]
        assert tg.calls_to("sendMessage")[0].via == "webhook-reply"

        update = {
            "update_id": 1,
            "message": {
                "message_id": 9,
                "date": 0,
                "text": "forged",
                "chat": chat.shape(),
                "from": tg.state.users[chat.id],
            },
        }
        for secret in ("wrong", ""):
            refused = await tg.post_update(url, update, secret=secret)
            assert refused.status == 401
        assert seen == ["ping"]
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count, info.allowed_updates) == (url, 0, ["message"])
    finally:
        await runner.cleanup()


async def test_webhook_redelivers_in_order_after_errors(tg: FakeTelegram, bot: Bot) -> None:
    received: list[tuple[int, str]] = []
    answers = [500, 200, 200, 200]

    async def endpoint(request: web.Request) -> web.Response:
        assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
        body = await request.json()
        received.append((body["update_id"], body["message"]["text"]))
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/telegram", endpoint)
    runner, url = await serve(app)
    try:
        await bot.set_webhook(url, secret_token=SECRET)
        chat = tg.inbound.private_chat()
        first, second = tg.inbound.text(chat, "one"), tg.inbound.text(chat, "two")
        assert first is not None and second is not None
        await tg.until(lambda: len(received) == 3)
        assert [text for _, text in received] == ["one", "one", "two"]  # retried before "two"
        assert [(d.update_id, d.attempt, d.status) for d in tg.deliveries] == [
            (first["update_id"], 1, 500),
            (first["update_id"], 2, 200),
            (second["update_id"], 1, 200),
        ]
        info = await bot.get_webhook_info()
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )
        assert info.pending_update_count == 0
        # A redelivery the test sends itself: same update, same id.
        again = await tg.post_update(url, first)
        assert again.status == 200 and received[-1] == (first["update_id"], "one")
    finally:
        await runner.cleanup()


async def test_set_webhook_validation() -> None:
    clock = ManualClock()
    async with telegram(https_webhooks_only=True, clock=clock) as (_, bot):
        with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
            await bot.set_webhook("https://bot.example.com/telegram", secret_token="no spaces!")
        with pytest.raises(TelegramRetryAfter):  # one setWebhook with a URL per second
            await bot.set_webhook("https://bot.example.com/telegram")
        await clock.advance(1.0)
        with pytest.raises(TelegramBadRequest, match="An HTTPS URL must be provided for webhook"):
            await bot.set_webhook("http://bot.example.com/telegram")
        await clock.advance(1.0)
        with pytest.raises(TelegramBadRequest, match="only on ports 80, 88, 443 or 8443"):
            await bot.set_webhook("https://bot.example.com:8080/telegram")


# ---- files ----------------------------------------------------------------------------------


async def test_incoming_files_download_by_get_file(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    photo = Update.model_validate(tg.inbound.photo(chat, PNG, caption="chart"))
    assert photo.message is not None and photo.message.photo is not None
    sizes = photo.message.photo
    assert [(s.width, s.height) for s in sizes] == [(90, 60), (3, 2)]  # largest last
    file = await bot.get_file(sizes[-1].file_id)
    assert file.file_path is not None and file.file_path.startswith("photos/")
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == PNG

    doc = Update.model_validate(tg.inbound.document(chat, b"%PDF-1.7", file_name="r.pdf"))
    assert doc.message is not None and doc.message.document is not None
    assert (doc.message.document.file_name, doc.message.document.mime_type) == (
        "r.pdf",
        "application/pdf",
    )
    voice = Update.model_validate(tg.inbound.voice(chat, b"OggS", duration=4))
    assert voice.message is not None and voice.message.voice is not None
    assert (voice.message.voice.duration, voice.message.voice.mime_type) == (4, "audio/ogg")
    assert (await bot.download(voice.message.voice.file_id)).read() == b"OggS"  # type: ignore[union-attr]

    huge = Update.model_validate(
        tg.inbound.document(chat, b"x", file_name="big.zip", declared_size=21 * 1024 * 1024)
    )
    assert huge.message is not None and huge.message.document is not None
    with pytest.raises(TelegramBadRequest, match=r"Bad Request: file is too big$"):
        await bot.get_file(huge.message.document.file_id)
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")
    async with aiohttp.ClientSession() as session:
        wrong = f"{tg.base_url}/file/bot{tg.bot_id}:wrong/{file.file_path}"
        async with session.get(wrong) as response:
            assert response.status == 404


async def test_outgoing_photo_and_document_uploads(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    photo = await bot.send_photo(
        chat.id, BufferedInputFile(PNG, "chart.png"), caption="<i>chart</i>", parse_mode="HTML"
    )
    assert photo.photo is not None and (photo.photo[-1].width, photo.photo[-1].height) == (3, 2)
    assert (photo.caption, [e.type for e in photo.caption_entities or []]) == ("chart", ["italic"])
    call = tg.calls_to("sendPhoto")[0]
    assert call.content_type == "multipart/form-data"
    (part,) = call.files.values()  # aiogram names the part and refers to it: attach://<name>
    assert call.args["photo"] == f"attach://{part.field}"
    assert (part.filename, part.data) == ("chart.png", PNG)

    doc = await bot.send_document(chat.id, BufferedInputFile(b"a,b\n1,2\n", "data.csv"))
    assert doc.document is not None and doc.document.file_name == "data.csv"
    assert tg.state.files.by_id[doc.document.file_id].data == b"a,b\n1,2\n"
    again = await bot.send_document(chat.id, doc.document.file_id)  # by file_id, no upload
    assert again.document is not None and again.document.file_id == doc.document.file_id

    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(chat.id, BufferedInputFile(b"not an image", "x.png"))
    with pytest.raises(TelegramBadRequest, match="can't use file of type Document as Photo"):
        await bot.send_photo(chat.id, doc.document.file_id)
    status, body, _ = await raw(tg, f"/bot{tg.token}/sendPhoto", json={"chat_id": chat.id})
    assert (status, body["description"]) == (400, "Bad Request: there is no photo in the request")


# ---- buttons, commands, typing --------------------------------------------------------------


async def test_inline_keyboard_press_and_answer(tg: FakeTelegram, bot: Bot) -> None:
    chat = tg.inbound.private_chat()
    sent = await bot.send_message(
        chat.id,
        "Was this helpful?",
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="👍", callback_data="fb:up"),
                    InlineKeyboardButton(text="👎", callback_data="fb:down"),
                ]
            ]
        ),
    )
    pressed = tg.inbound.press(tg.state.messages[(chat.id, sent.message_id)], "fb:up")
    query = Update.model_validate(pressed).callback_query
    assert query is not None and query.data == "fb:up" and query.message is not None
    assert await bot.answer_callback_query(query.id, text="Thanks!")
    assert tg.state.callbacks[query.id].answer == {
        "text": "Thanks!",
        "show_alert": False,
        "url": "",
        "cache_time": 0,
    }
    with pytest.raises(TelegramBadRequest, match="query is too old and response timeout expired"):
        await bot.answer_callback_query(query.id)
    too_long = InlineKeyboardButton(text="x", callback_data="d" * 65)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(
            chat.id, "x", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[too_long]])
        )


async def test_callback_queries_expire() -> None:
    clock = ManualClock()
    async with telegram(clock=clock) as (tg, bot):
        chat = tg.inbound.private_chat()
        sent = await bot.send_message(
            chat.id,
            "?",
            reply_markup=buttons("a"),
        )
        pressed = tg.inbound.press(tg.state.messages[(chat.id, sent.message_id)], "a")
        assert pressed is not None
        await clock.advance(16.0)
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(pressed["callback_query"]["id"])


async def test_commands_and_chat_actions(tg: FakeTelegram, bot: Bot) -> None:
    commands = [
        BotCommand(command="new", description="Start over"),
        BotCommand(command="help", description="How to use me"),
    ]
    assert await bot.set_my_commands(commands)
    assert [c.command for c in await bot.get_my_commands()] == ["new", "help"]
    for bad_command, error in (
        ("Start!", "BOT_COMMAND_INVALID"),
        ("x" * 33, "command length must not exceed 32"),
    ):
        with pytest.raises(TelegramBadRequest, match=error):
            await bot.set_my_commands([BotCommand(command=bad_command, description="d")])

    chat = tg.inbound.private_chat()
    assert await bot.send_chat_action(chat.id, "typing")
    assert tg.state.chat_actions == [(chat.id, "typing", None)]
    with pytest.raises(TelegramBadRequest, match="wrong parameter action in request"):
        await bot.send_chat_action(chat.id, "dancing")


async def test_privacy_mode_decides_what_a_group_bot_receives(tg: FakeTelegram, bot: Bot) -> None:
    group = tg.inbound.group()
    assert tg.inbound.text(group, "lunch anyone?") is None
    assert tg.inbound.text(group, "/ask@other_bot hi") is None
    assert tg.inbound.text(group, "@dify_fake_bot what is RAG?") is not None
    assert tg.inbound.text(group, "/ask how?") is not None
    answer = await bot.send_message(group.id, "RAG is …")
    reply = tg.inbound.text(
        group, "thanks", reply_to=tg.state.messages[(group.id, answer.message_id)]
    )
    assert reply is not None and reply["message"]["reply_to_message"]["from"]["is_bot"] is True
    assert [u["message"]["text"] for u in tg.inbound.hidden] == [
        "lunch anyone?",
        "/ask@other_bot hi",
    ]
    admin_group = tg.inbound.group("Admins", bot_is_admin=True)
    assert tg.inbound.text(admin_group, "plain chatter") is not None


# ---- captured payloads ----------------------------------------------------------------------


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what a normalizer relies on, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


UPDATE_FILES = sorted(
    p.name for p in PAYLOADS.glob("*.json") if not p.name.startswith(("response_", "error_"))
)


@pytest.mark.parametrize("name", UPDATE_FILES)
def test_captured_updates_are_valid_for_aiogram(name: str) -> None:
    raw_update = json.loads((PAYLOADS / name).read_text())
    update = Update.model_validate(raw_update)
    assert update.update_id == raw_update["update_id"]
    assert update.event_type == next(k for k in raw_update if k != "update_id")


async def test_fake_builds_updates_shaped_like_the_captures(tg: FakeTelegram) -> None:
    def captured(name: str) -> Any:
        return shape(json.loads((PAYLOADS / name).read_text()))

    ada = tg.inbound.user(first_name="Ada", last_name="Lovelace", username="ada_l")
    chat = tg.inbound.private_chat(ada)
    assert shape(tg.inbound.text(chat, "What can Dify do?")) == captured("private_text.json")
    group = tg.inbound.group()
    mention = tg.inbound.text(group, "@dify_fake_bot what is RAG?", user=ada)
    assert shape(mention) == captured("group_mention.json")
    forum = tg.inbound.group("Support", forum=True)
    topic = tg.inbound.topic(forum, "Uploads", by=tg.inbound.user(first_name="Li", username="li"))
    in_topic = tg.inbound.text(forum, "@dify_fake_bot the upload fails", user=ada, thread_id=topic)
    assert shape(in_topic) == captured("forum_topic_message.json")
    doc = tg.inbound.document(chat, b"%PDF", file_name="r.pdf", caption="summarise please")
    assert shape(doc) == captured("private_document.json")
    assert shape(tg.inbound.voice(chat, b"OggS")) == captured("private_voice.json")


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("error_429.json", 429, TelegramRetryAfter),
        ("error_parse_entities.json", 400, TelegramBadRequest),
        ("error_not_modified.json", 400, TelegramBadRequest),
        ("error_conflict.json", 409, TelegramConflictError),
        ("error_unauthorized.json", 401, TelegramUnauthorizedError),
        ("error_blocked.json", 403, TelegramForbiddenError),
        ("error_draft_peer.json", 400, TelegramBadRequest),
        ("error_migrated.json", 400, TelegramMigrateToChat),
    ],
)
def test_captured_errors_map_to_aiograms_exceptions(
    name: str, status: int, error: type[Exception]
) -> None:
    session = AiohttpSession()
    bot = Bot("1:x", session=session)
    content = (PAYLOADS / name).read_text()
    with pytest.raises(error) as caught:
        session.check_response(bot, SendMessage(chat_id=1, text="x"), status, content)
    assert json.loads(content)["description"] in str(caught.value)
    if isinstance(caught.value, TelegramRetryAfter):
        assert caught.value.retry_after == 7
    assert not isinstance(caught.value, TelegramNotFound)


async def test_captured_updates_can_be_pushed_and_answered(tg: FakeTelegram, bot: Bot) -> None:
    mention = json.loads((PAYLOADS / "group_mention.json").read_text())
    press = json.loads((PAYLOADS / "callback_query.json").read_text())
    tg.push(mention)
    tg.push(press)
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [mention["update_id"], press["update_id"]]
    message = updates[0].message
    assert message is not None
    reply = await bot.send_message(
        message.chat.id, "RAG is …", reply_parameters=ReplyParameters(message_id=message.message_id)
    )
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "@dify_fake_bot what is RAG?"
    assert reply.message_id == message.message_id + 1
    captured = json.loads((PAYLOADS / "response_send_message.json").read_text())
    sent = tg.calls_to("sendMessage")[-1].response["result"]
    assert shape(sent["from"]) == shape(captured["result"]["from"])
    assert await bot.answer_callback_query(press["callback_query"]["id"], text="Noted")

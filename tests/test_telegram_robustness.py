"""Telegram's edges: hostile webhook requests, polling through conflicts and outages, a reply
taken over from a replica that died, ``difybot check``, and the settings' own checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.telegram.api import TelegramApi
from adapters.telegram.check import check_telegram
from adapters.telegram.keyboard import AnswerMemory
from adapters.telegram.pacer import TelegramPacer
from adapters.telegram.reply import Place, ReplyKit, TelegramReply
from adapters.telegram.settings import TelegramSettings
from bot.errors import ConfigError
from bot.models import Answer
from difybot.config import load_settings
from tests.fakes.dify import FakeDify
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wechat_app import difybot
from tests.test_telegram_e2e import SECRET, answered, settings, telegram_bot

HOOK = {"telegram_webhook_url": "https://bot.example.com/telegram",
        "telegram_webhook_secret": SECRET}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"update_id": 1, "message": {}}', {}, 401),
        (b"not json", {"X-Telegram-Bot-Api-Secret-Token": SECRET}, 400),
        (b"[1, 2]", {"X-Telegram-Bot-Api-Secret-Token": SECRET}, 400),
        (b'{"update_id": "x"}', {"X-Telegram-Bot-Api-Secret-Token": SECRET}, 400),
        (b'{"update_id": 5, "poll": {}}', {"X-Telegram-Bot-Api-Secret-Token": SECRET}, 200),
    ],
)
async def test_hostile_webhook_requests(
    dify: FakeDify, tmp_path: Path, body: bytes, headers: dict[str, str], status: int
) -> None:
    async with (
        FakeTelegram() as tg,
        difybot(dify, tmp_path / "db", **settings(tg, **HOOK)) as running,
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/telegram", data=body, headers=headers) as response,
    ):
        assert response.status == status
    assert dify.requests_to("/chat-messages") == []


@pytest.mark.allow_warnings(r"getUpdates failed \(getUpdates: HTTP 502\)", r"Conflict: terminated")
async def test_polling_goes_on_through_a_conflict_and_an_outage(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeTelegram() as tg:
        tg.fail_next("getUpdates", 502, body=b"<html>Bad Gateway</html>")
        tg.fail_next(
            "getUpdates",
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running",
        )
        async with telegram_bot(dify, tg, tmp_path, telegram_poll_timeout=1) as running:
            chat = tg.inbound.private_chat()
            tg.inbound.text(chat, "still there?")
            await answered(tg, running, chat.id)
    statuses = [c.status for c in tg.calls_to("getUpdates")]
    assert statuses[:2] == [502, 409] and 200 in statuses
    assert tg.calls_to("deleteWebhook")  # a webhook left set would make polling fail


async def test_a_taken_over_reply_edits_what_was_posted(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        chat = tg.inbound.private_chat()
        api = TelegramApi(tg.token, tg.base_url)
        posted = await api.call("sendMessage", {"chat_id": chat.id, "text": "half an ans"})
        kit = ReplyKit(api=api, pacer=TelegramPacer(), memory=_NoMemory(), text=lambda k, _: k)
        saved: list[dict[str, Any]] = []

        async def save(state: dict[str, Any]) -> None:
            saved.append(state)

        reply = TelegramReply(
            kit, Place(chat.id, group=False), entry_id=7, locale=None, save=save,
            resume=[posted["message_id"]],
        )  # fmt: skip
        await reply.start()
        await reply.update("half an answer, fin")
        await reply.finish("half an answer, finished by another replica", Answer())
        await api.aclose()
    (message,) = tg.state.sent_by_bot(chat.id)
    assert message.text == "half an answer, finished by another replica"
    assert len(tg.calls_to("sendMessage")) == 1  # only the first replica's post
    assert tg.calls_to("sendMessageDraft") == []  # a resumed answer shows no second draft


class _NoMemory(AnswerMemory):
    def __init__(self) -> None:
        pass


async def test_check_reports_the_bot_and_a_refused_token() -> None:
    async with FakeTelegram() as tg:
        good = TelegramSettings(telegram_bot_token=tg.token, telegram_api_base=tg.base_url)
        (found,) = await check_telegram(good)
        bad = TelegramSettings(telegram_bot_token="123:nope", telegram_api_base=tg.base_url)
        (refused,) = await check_telegram(bad)
    assert found.ok and "@dify_fake_bot" in found.detail and "privacy mode on" in found.detail
    assert not refused.ok and "401" not in refused.fix and "@BotFather" in refused.fix
    assert "nope" not in refused.detail


def test_webhook_mode_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(
            dify_api_key="app-test-key",
            telegram_bot_token="1:x",
            telegram_webhook_url="https://bot.example.com/telegram",
        )
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(dify_api_key="app-test-key", telegram_bot_token="1:x",
                      telegram_webhook_url="https://bot.example.com/telegram",
                      telegram_webhook_secret="has spaces")  # fmt: skip


async def test_a_refused_token_or_webhook_url_stops_startup_naming_the_setting(
    dify: FakeDify, tmp_path: Path
) -> None:
    async with FakeTelegram(https_webhooks_only=True) as tg:
        token = tg.token
        tg.revoke_token()
        with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
            async with difybot(dify, tmp_path / "a", **settings(tg, telegram_bot_token=token)):
                pass
        plain = {**HOOK, "telegram_webhook_url": "http://bot.example.com:8080/telegram"}
        with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_URL: setWebhook: Bad Request"):
            async with difybot(dify, tmp_path / "b", **settings(tg, **plain)):
                pass


async def test_typing_repeats_and_a_paused_draft_is_shown_again() -> None:
    async with FakeTelegram() as tg:
        chat = tg.inbound.private_chat()
        api = TelegramApi(tg.token, tg.base_url)
        kit = ReplyKit(api=api, pacer=TelegramPacer(), memory=_NoMemory(), text=lambda k, _: k,
                       typing_every=0.05, draft_refresh=0.2)  # fmt: skip
        reply = TelegramReply(kit, Place(chat.id, group=False), entry_id=9, locale=None)
        await reply.start()
        await reply.update("thinking about it")  # then a long pause: a tool runs
        frames = await tg.wait_for("sendMessageDraft", 2)
        await tg.wait_for("sendChatAction", 3)
        await reply.finish("thinking about it: done", Answer())
        await api.aclose()
    assert [f.args["text"] for f in frames[:2]] == ["thinking about it"] * 2
    assert tg.rate_limited == []

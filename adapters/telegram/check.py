"""``difybot check`` for Telegram: the token (``getMe``) and, in webhook mode, what Telegram
says about the webhook (``getWebhookInfo``: its URL and its last delivery error)."""

from __future__ import annotations

from adapters.spec import Check
from adapters.telegram.api import TelegramApi, TelegramError
from adapters.telegram.settings import TelegramSettings


async def check_telegram(settings: TelegramSettings) -> list[Check]:
    assert settings.telegram_bot_token is not None
    api = TelegramApi(
        settings.telegram_bot_token.get_secret_value(), settings.telegram_base, timeout=10
    )
    try:
        return await _checks(api, settings)
    finally:
        await api.aclose()


async def _checks(api: TelegramApi, settings: TelegramSettings) -> list[Check]:
    try:
        me = await api.call("getMe")
    except TelegramError as exc:
        if exc.status == 401:
            fix = "set TELEGRAM_BOT_TOKEN to the token @BotFather gave (/token to see it again)"
        else:
            fix = "check TELEGRAM_API_BASE and the network path to Telegram"
        return [Check("Telegram bot token", False, exc.message, fix)]
    privacy = (
        "reads every group message"
        if me.get("can_read_all_group_messages")
        else ("privacy mode on: in groups it sees commands, mentions and replies to it")
    )
    checks = [Check("Telegram bot token", True, f"@{me.get('username')} ({privacy})")]
    if settings.telegram_webhook_url is not None:
        checks.append(await _webhook(api, str(settings.telegram_webhook_url)))
    return checks


async def _webhook(api: TelegramApi, url: str) -> Check:
    try:
        info = await api.call("getWebhookInfo")
    except TelegramError as exc:
        return Check("Telegram webhook", False, exc.message, "check the network path")
    if info.get("url") != url:
        detail = f"Telegram has {info.get('url') or 'no webhook'!r}; difybot sets it at start"
        return Check("Telegram webhook", True, detail)
    error = info.get("last_error_message")
    if error:
        fix = f"make {url} reachable from Telegram (HTTPS, ports 443, 80, 88 or 8443)"
        return Check("Telegram webhook", False, f"last delivery failed: {error}", fix)
    return Check("Telegram webhook", True, f"{info.get('pending_update_count', 0)} pending")

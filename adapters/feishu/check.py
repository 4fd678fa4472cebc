"""``difybot check`` for Feishu: the app credentials (a tenant token) and the bot's info
(``GET /bot/v3/info``: the bot is enabled and has an open_id)."""

from __future__ import annotations

import httpx

from adapters.feishu.api import FeishuAPIError, build_http, send
from adapters.feishu.settings import FeishuSettings
from adapters.spec import Check


async def check_feishu(settings: FeishuSettings) -> list[Check]:
    assert settings.feishu_app_id is not None and settings.feishu_app_secret is not None
    body = {"app_id": settings.feishu_app_id,
            "app_secret": settings.feishu_app_secret.get_secret_value()}  # fmt: skip
    async with build_http(settings.feishu_origin) as http:
        try:
            answer = await send(http, "POST", "/open-apis/auth/v3/tenant_access_token/internal",
                                json=body)  # fmt: skip
            token = str(answer.get("tenant_access_token") or "")
            info = await send(http, "GET", "/open-apis/bot/v3/info", token=token)
        except FeishuAPIError as exc:
            fix = "set FEISHU_APP_ID and FEISHU_APP_SECRET from the app's Credentials page"
            if isinstance(exc.__cause__, httpx.HTTPError):
                fix = "check FEISHU_API_BASE and the network path to Feishu"
            return [Check("Feishu app", False, str(exc), fix)]
    checks = [Check("Feishu app", True, f"tenant token issued for {settings.feishu_app_id}")]
    bot = info.get("bot") if isinstance(info.get("bot"), dict) else {}
    assert isinstance(bot, dict)
    if not bot.get("open_id"):
        fix = "turn on the Bot capability (Features > Bot) and publish a version of the app"
        return [*checks, Check("Feishu bot", False, "the app has no bot", fix)]
    enabled = bot.get("activate_status") == 2
    detail = f"{bot.get('app_name')} ({bot['open_id']})"
    fix = "" if enabled else "the tenant's admin must approve/enable the app's published version"
    return [*checks, Check("Feishu bot", enabled, detail, fix)]

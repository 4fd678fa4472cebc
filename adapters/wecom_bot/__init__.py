"""The WeCom AI bot (智能机器人) at ``GET/POST /wecom/bot``: answers streamed as they grow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.spec import Credentials, PlatformSpec, Services
from adapters.tencent.texts import TEXTS
from adapters.wecom_bot.settings import WeComBotSettings

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: WeComBotSettings, services: Services) -> Platform:
    from adapters.wecom_bot.bot import build_wecom_bot

    return build_wecom_bot(settings, services)


WECOM_BOT = PlatformSpec(
    name="wecom_bot",
    title="the WeCom AI bot",
    settings=WeComBotSettings,
    credentials=Credentials(("wecom_bot_token", "wecom_bot_encoding_aes_key")),
    build=_build,
    texts=TEXTS,
)

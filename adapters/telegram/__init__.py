"""Telegram: private chats, groups (mention, reply, /ask) and forum topics; long polling or a
webhook at ``POST /telegram``; answers streamed by draft or by edits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.spec import Credentials, PlatformSpec, Probe, Services
from adapters.telegram.settings import TelegramSettings
from adapters.telegram.texts import TEXTS

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: TelegramSettings, services: Services) -> Platform:
    from adapters.telegram.adapter import build_telegram

    return build_telegram(settings, services)


def _probes(settings: TelegramSettings) -> Sequence[Probe]:
    from adapters.telegram.check import check_telegram

    return [("Telegram", lambda: check_telegram(settings))]


TELEGRAM = PlatformSpec(
    name="telegram",
    title="Telegram",
    settings=TelegramSettings,
    credentials=Credentials(("telegram_bot_token",)),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

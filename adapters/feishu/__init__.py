"""Feishu / Lark: p2p chats, group mentions answered in threads, streaming cards, buttons;
the long connection or ``POST /feishu/events``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.feishu.settings import FeishuSettings
from adapters.feishu.texts import TEXTS
from adapters.spec import Credentials, PlatformSpec, Probe, Services

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: FeishuSettings, services: Services) -> Platform:
    from adapters.feishu.platform import build_feishu

    return build_feishu(settings, services)


def _probes(settings: FeishuSettings) -> Sequence[Probe]:
    from adapters.feishu.check import check_feishu

    return [("Feishu", lambda: check_feishu(settings))]


FEISHU = PlatformSpec(
    name="feishu",
    title="Feishu",
    settings=FeishuSettings,
    credentials=Credentials(
        ("feishu_app_id", "feishu_app_secret"),
        optional=("feishu_verification_token", "feishu_encrypt_key"),
    ),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

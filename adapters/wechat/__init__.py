"""The WeChat Official Account (公众号) at ``GET/POST /wechat``: 5-second rule, push and fetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.spec import Credentials, PlatformSpec, Probe, Services
from adapters.tencent.texts import TEXTS
from adapters.wechat.settings import OfficialAccountSettings

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: OfficialAccountSettings, services: Services) -> Platform:
    from adapters.wechat.official import build_official_account

    return build_official_account(settings, services)


def _probes(settings: OfficialAccountSettings) -> Sequence[Probe]:
    from adapters.wechat.check import check_official_account

    return [("WeChat", lambda: check_official_account(settings))]


OFFICIAL_ACCOUNT = PlatformSpec(
    name="wechat",
    title="the WeChat Official Account",
    settings=OfficialAccountSettings,
    credentials=Credentials(
        ("wechat_token", "wechat_app_id"),
        optional=("wechat_app_secret", "wechat_encoding_aes_key"),
    ),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

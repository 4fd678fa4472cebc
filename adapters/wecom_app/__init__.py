"""The WeCom (企业微信) self-built app at ``GET/POST /wecom``: answers through the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.spec import Credentials, PlatformSpec, Probe, Services
from adapters.tencent.texts import TEXTS
from adapters.wecom_app.settings import WeComAppSettings

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: WeComAppSettings, services: Services) -> Platform:
    from adapters.wecom_app.app import build_wecom_app

    return build_wecom_app(settings, services)


def _probes(settings: WeComAppSettings) -> Sequence[Probe]:
    from adapters.wecom_app.check import check_wecom_app

    return [("WeCom", lambda: check_wecom_app(settings))]


WECOM_APP = PlatformSpec(
    name="wecom",
    title="the WeCom app",
    settings=WeComAppSettings,
    credentials=Credentials(
        ("wecom_corp_id", "wecom_agent_id", "wecom_secret", "wecom_token", "wecom_encoding_aes_key")
    ),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

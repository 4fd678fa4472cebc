"""DingTalk (钉钉): robot single chats and group @mentions, Stream mode or HTTP callbacks,
answers streamed into AI cards or sent as robot Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.dingtalk.settings import DingTalkSettings
from adapters.dingtalk.texts import TEXTS
from adapters.spec import Credentials, PlatformSpec, Probe, Services

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: DingTalkSettings, services: Services) -> Platform:
    from adapters.dingtalk.build import build_dingtalk

    return build_dingtalk(settings, services)


def _probes(settings: DingTalkSettings) -> Sequence[Probe]:
    from adapters.dingtalk.check import check_dingtalk

    return [("DingTalk", lambda: check_dingtalk(settings))]


DINGTALK = PlatformSpec(
    name="dingtalk",
    title="DingTalk",
    settings=DingTalkSettings,
    credentials=Credentials(("dingtalk_client_id", "dingtalk_client_secret")),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

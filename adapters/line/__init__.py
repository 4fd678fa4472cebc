"""LINE (Messaging API) at ``POST /line``: 1:1 chats, groups and rooms, whole answers by reply
or push."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.line.settings import LineSettings
from adapters.line.texts import TEXTS
from adapters.spec import Credentials, PlatformSpec, Probe, Services

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: LineSettings, services: Services) -> Platform:
    from adapters.line.wiring import build_line

    return build_line(settings, services)


def _probes(settings: LineSettings) -> Sequence[Probe]:
    from adapters.line.check import check_line

    return [("LINE", lambda: check_line(settings))]


LINE = PlatformSpec(
    name="line",
    title="LINE",
    settings=LineSettings,
    credentials=Credentials(("line_channel_secret", "line_channel_access_token")),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

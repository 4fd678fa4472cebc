"""Slack: DMs, mentions and threads, ``/dify``, buttons; Socket Mode or HTTP; streamed answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.slack.settings import SlackSettings
from adapters.slack.texts import TEXTS
from adapters.spec import Credentials, PlatformSpec, Probe, Services

if TYPE_CHECKING:
    from bot.contract import Platform


def _build(settings: SlackSettings, services: Services) -> Platform:
    from adapters.slack.adapter import build_slack

    return build_slack(settings, services)


def _probes(settings: SlackSettings) -> Sequence[Probe]:
    from adapters.slack.check import check_slack

    return [("Slack", lambda: check_slack(settings))]


SLACK = PlatformSpec(
    name="slack",
    title="Slack",
    settings=SlackSettings,
    credentials=Credentials(
        ("slack_bot_token",), one_of=("slack_app_token", "slack_signing_secret")
    ),
    build=_build,
    probes=_probes,
    texts=TEXTS,
)

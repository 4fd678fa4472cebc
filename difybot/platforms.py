"""The platforms difybot speaks: one line each (``adapters/<name>/`` holds everything else)."""

from __future__ import annotations

from typing import Any

from adapters.dingtalk import DINGTALK
from adapters.line import LINE
from adapters.slack import SLACK
from adapters.spec import PlatformSpec
from adapters.wechat import OFFICIAL_ACCOUNT
from adapters.wecom_app import WECOM_APP
from adapters.wecom_bot import WECOM_BOT

PLATFORMS: tuple[PlatformSpec[Any], ...] = (
    SLACK,
    OFFICIAL_ACCOUNT,
    WECOM_APP,
    WECOM_BOT,
    LINE,
    DINGTALK,
)

# The terminal chat (``difybot chat``) is a platform too, but no setting turns it on.
CONSOLE = "console"


def platform_names() -> frozenset[str]:
    """Every platform a routes file or ``--platform`` may name."""
    return frozenset({spec.name for spec in PLATFORMS} | {CONSOLE})

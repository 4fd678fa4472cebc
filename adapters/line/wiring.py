"""The LINE platform built from its settings: API client, pacer, webhook route, file source."""

from __future__ import annotations

import hashlib

from adapters.line.api import LineAPI, LinePacer, build_http
from adapters.line.files import LineFiles
from adapters.line.inbound import PLATFORM
from adapters.line.reply import ReplyOptions
from adapters.line.settings import LineSettings
from adapters.line.webhook import LineAdapter
from adapters.metering import meter
from adapters.spec import Services
from bot.contract import Allowlist, Platform


def build_line(settings: LineSettings, services: Services) -> Platform:
    s = settings
    assert s.line_channel_secret is not None and s.line_channel_access_token is not None
    token = s.line_channel_access_token.get_secret_value()
    # The channel's name in the shared budgets: a hash of its token (no channel id is set).
    channel = hashlib.sha256(token.encode()).hexdigest()[:16]
    api = LineAPI(
        meter(build_http(), services.metrics, PLATFORM),
        token=token,
        api_base=str(s.line_api_base),
        data_base=str(s.line_data_api_base),
        pacer=LinePacer(
            budgets=services.budgets,
            channel=channel,
            metrics=services.metrics,
            clock=services.clock,
            sleep=services.sleep,
        ),
        sleep=services.sleep,
    )
    options = ReplyOptions(
        reply_window=s.line_reply_window,
        push_limit=s.line_push_limit,
        loading_seconds=s.line_loading_seconds,
        feedback=s.line_feedback_buttons,
        suggestions_wait=s.line_suggestions_wait,
    )
    scope = services.conversation_scope
    per_user = s.line_group_conversation == "user" if not scope else scope == "user"
    adapter = LineAdapter(
        services.inbox,
        api=api,
        secret=s.line_channel_secret.get_secret_value(),
        options=options,
        per_user=per_user,
        locale=services.inbox.locale(PLATFORM) or s.line_locale,
    )
    adapter.add_routes(services.web)
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=LineFiles(api, services.fetch),
        allowlist=Allowlist.of(users=s.line_allowed_users),
    )

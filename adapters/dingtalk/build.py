"""The DingTalk platform from its settings: API client, adapter, transport, routes."""

from __future__ import annotations

from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.dingtalk.api import DingTalkAPI, DingTalkPacer, build_http
from adapters.dingtalk.files import DingTalkFiles
from adapters.dingtalk.inbound import PLATFORM
from adapters.dingtalk.settings import DingTalkSettings
from adapters.dingtalk.stream import StreamClient
from adapters.spec import Services
from bot.contract import Allowlist, Platform


def build_dingtalk(settings: DingTalkSettings, services: Services) -> Platform:
    s = settings
    assert s.dingtalk_client_id is not None and s.dingtalk_client_secret is not None
    secret = s.dingtalk_client_secret.get_secret_value()
    http = build_http(services.metrics, timeout=s.dingtalk_request_timeout, platform=PLATFORM)
    api = DingTalkAPI(
        http,
        client_id=s.dingtalk_client_id,
        client_secret=secret,
        api_base=s.dingtalk_api_url,
        oapi_base=s.dingtalk_oapi_url,
        tokens=services.tokens,
        pacer=DingTalkPacer(
            budgets=services.budgets,
            app=s.dingtalk_client_id,
            metrics=services.metrics,
            clock=services.clock,
            sleep=services.sleep,
        ),
    )
    stream = StreamClient(api, client_secret=secret) if s.dingtalk_event_mode == "stream" else None
    adapter = DingTalkAdapter(
        services.inbox,
        api,
        states=services.states,
        secret=secret,
        locale=s.dingtalk_locale,
        per_user=s.dingtalk_group_scope == "user" or services.conversation_scope == "user",
        template_id=s.dingtalk_card_template_id,
        content_key=s.dingtalk_card_content_key,
        stream=stream,
        feedback=s.dingtalk_feedback,
        buttons=s.dingtalk_card_buttons,
    )
    if stream is None:
        adapter.add_routes(services.web)
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=DingTalkFiles(api, services.fetch),
        allowlist=Allowlist.of(users=s.dingtalk_allowed_users, channels=s.dingtalk_allowed_groups),
    )

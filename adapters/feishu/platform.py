"""Feishu built from its settings: the API client, the adapter, its door (webhook or long
connection), its files and allowlist."""

from __future__ import annotations

from pydantic import SecretStr

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.api import FeishuAPI, FeishuPacer, TenantToken, build_http
from adapters.feishu.files import FeishuFiles
from adapters.feishu.inbound import PLATFORM
from adapters.feishu.reply import CardKitSwitch
from adapters.feishu.settings import FeishuSettings
from adapters.feishu.ws import LongConnection
from adapters.metering import meter
from adapters.spec import Services
from bot.contract import Allowlist, Platform


def build_feishu(settings: FeishuSettings, services: Services) -> Platform:
    s = settings
    assert s.feishu_app_id is not None and s.feishu_app_secret is not None
    webhook = s.feishu_event_mode == "webhook"  # the settings made sure of its token
    secret = s.feishu_app_secret.get_secret_value()
    http = meter(build_http(s.feishu_origin), services.metrics, PLATFORM)
    token = TenantToken(http, services.tokens, app_id=s.feishu_app_id, app_secret=secret)
    pacer = FeishuPacer(budgets=services.budgets, app=s.feishu_app_id, metrics=services.metrics,
                        sleep=services.sleep, clock=services.clock)  # fmt: skip
    api = FeishuAPI(http, token, pacer)
    adapter = FeishuAdapter(
        services.inbox,
        api,
        threads=services.threads,
        callbacks=services.callbacks,
        verification_token=_value(s.feishu_verification_token),
        encrypt_key=_value(s.feishu_encrypt_key),
        locale=s.feishu_locale,
        per_chat=services.conversation_scope == "channel",
        thread_ttl=s.feishu_thread_memory_hours * 3600.0,
        cardkit=CardKitSwitch(s.feishu_streaming_cards),
        feedback=s.feishu_feedback_buttons,
        answer_files=services.answer_files,
        # ``settings`` is difybot's whole Settings: the core's SHUTDOWN_TIMEOUT is there.
        grace=float(getattr(settings, "shutdown_timeout", 25.0)),
    )
    if webhook:
        adapter.add_routes(services.web)
    else:
        adapter.connection = LongConnection(
            http, app_id=s.feishu_app_id, app_secret=secret, handle=adapter.handle,
            sleep=services.sleep,
        )  # fmt: skip
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=adapter.reply,
        files=FeishuFiles(api),
        allowlist=Allowlist.of(channels=s.feishu_allowed_chats, users=s.feishu_allowed_users),
    )


def _value(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""

"""``difybot check`` for the WeCom app: fetch an access token the way ``serve`` does
(``gettoken``: it does not invalidate the token replicas are using)."""

from __future__ import annotations

from adapters.spec import Check
from adapters.tencent.api import build_http, wecom_token
from adapters.tencent.check import failed
from adapters.tencent.errors import WeChatAPIError
from adapters.wecom_app.settings import WeComAppSettings


async def check_wecom_app(settings: WeComAppSettings) -> list[Check]:
    name = "WeCom app"
    corp_id, secret = settings.wecom_corp_id, settings.wecom_secret
    if not corp_id or secret is None or not settings.wecom_agent_id:
        fix = "set WECOM_CORP_ID, WECOM_AGENT_ID and WECOM_SECRET"
        return [Check(name, False, "incomplete settings", fix)]
    http = build_http(str(settings.wecom_api_base))
    try:
        await wecom_token(http, corp_id=corp_id, secret=secret.get_secret_value(), force=False)
    except WeChatAPIError as exc:
        return [failed(name, corp_id, exc)]
    finally:
        await http.aclose()
    return [Check(name, True, f"{corp_id} agent {settings.wecom_agent_id}: access token issued")]

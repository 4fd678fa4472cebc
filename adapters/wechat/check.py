"""``difybot check`` for the Official Account: fetch an access token the way ``serve`` does
(``stable_token``: it does not invalidate the token replicas are using)."""

from __future__ import annotations

from adapters.spec import Check
from adapters.tencent.api import build_http, stable_token
from adapters.tencent.check import failed
from adapters.tencent.errors import WeChatAPIError
from adapters.wechat.settings import OfficialAccountSettings


async def check_official_account(settings: OfficialAccountSettings) -> list[Check]:
    name = "WeChat Official Account"
    app_id, secret = settings.wechat_app_id, settings.wechat_app_secret
    if not app_id:
        return [Check(name, False, "WECHAT_TOKEN is set but WECHAT_APP_ID is not", "set it")]
    if secret is None:
        detail = f"{app_id}: passive replies only (no WECHAT_APP_SECRET, so no API calls)"
        return [Check(name, True, detail)]
    http = build_http(str(settings.wechat_api_base))
    try:
        await stable_token(http, app_id=app_id, secret=secret.get_secret_value(), force=False)
    except WeChatAPIError as exc:
        return [failed(name, app_id, exc)]
    finally:
        await http.aclose()
    return [Check(name, True, f"{app_id}: access token issued")]

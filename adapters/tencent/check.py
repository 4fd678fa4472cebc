"""``difybot check`` for WeChat and WeCom: fetch an access token the way ``serve`` does
(``stable_token`` / ``gettoken``: neither invalidates the token replicas are using)."""

from __future__ import annotations

from adapters.tencent.api import build_http, stable_token, wecom_token
from adapters.tencent.errors import WeChatAPIError
from difybot.checks import Check
from difybot.config import Settings

# The errcodes a wrong setup gives, and what fixes each.
_FIXES = {
    40013: "the id is wrong: check WECHAT_APP_ID / WECOM_CORP_ID",
    40125: "the secret is wrong: check WECHAT_APP_SECRET",
    40001: "the secret is wrong: check WECHAT_APP_SECRET / WECOM_SECRET",
    40091: "the secret is wrong: check WECOM_SECRET",
    40164: "this server's IP is not on the account's IP allowlist: add it in the console",
    60020: "this server's IP is not on the WeCom app's trusted IP list: add it in the admin",
    -1: "cannot reach the API: check WECHAT_API_BASE / WECOM_API_BASE and the network",
}


async def check_official_account(settings: Settings) -> list[Check]:
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
        return [_failed(name, app_id, exc)]
    finally:
        await http.aclose()
    return [Check(name, True, f"{app_id}: access token issued")]


async def check_wecom_app(settings: Settings) -> list[Check]:
    name = "WeCom app"
    corp_id, secret = settings.wecom_corp_id, settings.wecom_secret
    if not corp_id or secret is None or not settings.wecom_agent_id:
        fix = "set WECOM_CORP_ID, WECOM_AGENT_ID and WECOM_SECRET"
        return [Check(name, False, "incomplete settings", fix)]
    http = build_http(str(settings.wecom_api_base))
    try:
        await wecom_token(http, corp_id=corp_id, secret=secret.get_secret_value(), force=False)
    except WeChatAPIError as exc:
        return [_failed(name, corp_id, exc)]
    finally:
        await http.aclose()
    return [Check(name, True, f"{corp_id} agent {settings.wecom_agent_id}: access token issued")]


def _failed(name: str, account: str, exc: WeChatAPIError) -> Check:
    fix = _FIXES.get(exc.errcode, "see the errcode in the WeChat/WeCom error code list")
    return Check(name, False, f"{account}: token refused (errcode {exc.errcode})", fix)

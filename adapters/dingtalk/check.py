"""``difybot check`` for DingTalk: the client id and secret get an access token, and, with a
card template set, that the template is the one the README describes is left to a first answer
(DingTalk has no API that reads a template)."""

from __future__ import annotations

import httpx

from adapters.dingtalk.api import DingTalkAPIError, to_result
from adapters.dingtalk.settings import DingTalkSettings
from adapters.spec import Check

_FIX = (
    "set DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET to the app's Client ID (AppKey) and "
    "Client Secret (AppSecret) from open-dev.dingtalk.com → your app → Credentials"
)


async def check_dingtalk(settings: DingTalkSettings) -> list[Check]:
    assert settings.dingtalk_client_id is not None and settings.dingtalk_client_secret is not None
    body = {
        "appKey": settings.dingtalk_client_id,
        "appSecret": settings.dingtalk_client_secret.get_secret_value(),
    }
    url = f"{settings.dingtalk_api_url}/v1.0/oauth2/accessToken"
    try:
        async with httpx.AsyncClient(timeout=settings.dingtalk_request_timeout) as http:
            answer = to_result(await http.post(url, json=body))
    except DingTalkAPIError as exc:
        return [Check("DingTalk credentials", False, f"accessToken: {exc.code}", _FIX)]
    except httpx.HTTPError as exc:
        fix = "check DINGTALK_API_BASE and the network path to DingTalk"
        return [Check("DingTalk credentials", False, f"cannot reach DingTalk: {exc!r}", fix)]
    mode = settings.dingtalk_event_mode
    where = "Stream mode" if mode == "stream" else "HTTP callbacks at POST /dingtalk"
    detail = f"access token issued ({answer.get('expireIn', '?')} s); {where}"
    checks = [Check("DingTalk credentials", True, detail)]
    if settings.dingtalk_card_template_id:
        key = settings.dingtalk_card_content_key
        template = settings.dingtalk_card_template_id
        checks.append(Check("DingTalk AI card", True, f"template {template}, streams into {key}"))
    return checks

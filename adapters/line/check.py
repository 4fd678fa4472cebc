"""``difybot check`` for LINE: the channel access token, by asking for the bot's own info."""

from __future__ import annotations

from adapters.line.api import LineAPI, LineAPIError, LinePacer, build_http
from adapters.line.settings import LineSettings
from adapters.spec import Check

NAME = "LINE channel"


async def check_line(settings: LineSettings) -> list[Check]:
    assert settings.line_channel_access_token is not None
    http = build_http()
    api = LineAPI(
        http,
        token=settings.line_channel_access_token.get_secret_value(),
        api_base=str(settings.line_api_base),
        data_base=str(settings.line_data_api_base),
        pacer=LinePacer(attempts=1),
    )
    try:
        info = await api.bot_info()
    except LineAPIError as exc:
        fix = (
            "set LINE_CHANNEL_ACCESS_TOKEN to a long-lived channel access token (LINE Developers"
            " console: the channel, Messaging API tab)"
        )
        return [Check(NAME, False, f"GET /v2/bot/info: {exc.status} {exc.message}", fix)]
    finally:
        await http.aclose()
    name, basic_id = info.get("displayName", "?"), info.get("basicId", "?")
    return [Check(NAME, True, f"{name} ({basic_id}): access token accepted")]

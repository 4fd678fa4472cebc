"""``difybot check`` for Slack: the bot token (``auth.test``), its scopes against manifest.yml,
and the app-level token when Socket Mode is on (``apps.connections.open``, which only hands out
a URL: nothing connects)."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.sender import slack_error
from adapters.slack.settings import SlackSettings
from adapters.spec import Check

# The bot scopes manifest.yml asks for (tests/test_ops_checks.py keeps the two equal).
MANIFEST_SCOPES = frozenset(
    {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "mpim:history",
        "chat:write",
        "commands",
        "files:read",
        "files:write",
    }
)
_REINSTALL = "add them under OAuth & Permissions (or recreate the app from manifest.yml), reinstall"


async def check_slack(settings: SlackSettings) -> list[Check]:
    assert settings.slack_bot_token is not None
    base_url = settings.slack_api_base
    bot = AsyncWebClient(settings.slack_bot_token.get_secret_value(), base_url, timeout=10)
    try:
        response = await bot.auth_test()
    except SlackApiError as exc:
        fix = "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…) of the installed app"
        return [Check("Slack bot token", False, f"auth.test: {slack_error(exc)}", fix)]
    except (aiohttp.ClientError, TimeoutError) as exc:
        fix = "check SLACK_API_URL and the network path to Slack"
        return [Check("Slack bot token", False, f"cannot reach Slack: {exc!r}", fix)]
    who = f"@{response.get('user')} in {response.get('team')} ({response.get('team_id')})"
    wanted = MANIFEST_SCOPES | ({"users:read"} if settings.slack_user_lookup else set())
    checks = [Check("Slack bot token", True, who), _scopes(response.headers, wanted)]
    if settings.slack_app_token is not None:
        checks.append(await _app_token(settings.slack_app_token.get_secret_value(), base_url))
    return checks


def _scopes(headers: dict[str, str], wanted: frozenset[str]) -> Check:
    granted_header = next((v for k, v in headers.items() if k.lower() == "x-oauth-scopes"), None)
    if granted_header is None:
        return Check("Slack scopes", True, "not reported by Slack (nothing to compare)")
    granted = {scope.strip() for scope in granted_header.split(",") if scope.strip()}
    missing = sorted(wanted - granted)
    if missing:
        return Check("Slack scopes", False, f"missing: {', '.join(missing)}", _REINSTALL)
    return Check("Slack scopes", True, f"all {len(wanted)} of manifest.yml granted")


async def _app_token(token: str, base_url: str) -> Check:
    app = AsyncWebClient(token, base_url, timeout=10)
    try:
        await app.apps_connections_open(app_token=token)
    except SlackApiError as exc:
        fix = "set SLACK_APP_TOKEN to an app-level token (xapp-…) with connections:write"
        return Check("Slack Socket Mode", False, f"apps.connections.open: {slack_error(exc)}", fix)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check("Slack Socket Mode", False, f"cannot reach Slack: {exc!r}", "check network")
    return Check("Slack Socket Mode", True, "app-level token accepted")

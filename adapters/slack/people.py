"""Who asks: a Slack user's display name and locale (``users.info``), cached a day.

Slack events carry neither, so with SLACK_USER_LOOKUP the bot looks each asker up once: the
locale picks the language of the bot's own texts, the name fills an app's ``user_name`` input.
It needs the ``users:read`` scope; without it (``missing_scope``) lookups stop for good.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.memory import TtlMap
from adapters.slack.sender import slack_error

log = logging.getLogger(__name__)

# Listeners run before the ack (process_before_response) and Slack wants it within 3 s.
LOOKUP_TIMEOUT = 1.5


@dataclass(frozen=True, slots=True)
class Person:
    name: str = ""
    locale: str = ""  # IETF tag, e.g. "ja-JP"


class People:
    def __init__(self, client: AsyncWebClient, cache: TtlMap[str, Person]) -> None:
        self._client = client
        self._cache = cache
        self._enabled = True

    async def get(self, team: str, user: str) -> Person:
        """The person, or an empty one when Slack would not say (never raises)."""
        key = f"{team}:{user}"
        known = self._cache.get(key)
        if known is not None or not self._enabled or not user:
            return known or Person()
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                response = await self._client.users_info(user=user, include_locale=True)
        except SlackApiError as exc:
            self._enabled = slack_error(exc) != "missing_scope"
            log.warning("users.info failed (%s); SLACK_USER_LOOKUP needs users:read", exc)
            return Person()
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("users.info did not answer in time: %r", exc)
            return Person()
        person = to_person(response.get("user") or {})
        self._cache.set(key, person)
        return person


def to_person(user: dict[str, object]) -> Person:
    profile = user.get("profile")
    names = profile if isinstance(profile, dict) else {}
    name = names.get("display_name") or names.get("real_name") or user.get("name") or ""
    return Person(name=str(name), locale=str(user.get("locale") or ""))

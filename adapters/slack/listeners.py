"""Bolt listeners for events: messages, mentions, and the App Home's messages tab."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.answers import SlackAnswers
from adapters.slack.blocks import body_blocks, fallback_text, suggestion_blocks
from adapters.slack.events import PLATFORM, Router, TtlMap, thread_id
from adapters.slack.sender import slack_error

log = logging.getLogger(__name__)


def team_of(body: dict[str, Any], context: AsyncBoltContext) -> str:
    """The workspace: the team id (the enterprise id for org-wide installs without one)."""
    team = body.get("team_id") or context.team_id or context.enterprise_id
    if not team and isinstance(body.get("team"), dict):
        team = body["team"].get("id")
    return str(team or "")


class EventListeners:
    """Registered on the bolt app. The app processes before responding, so bolt acks an event
    only once ``on_message`` has recorded it in the journal: nothing acked is ever lost."""

    def __init__(self, router: Router, answers: SlackAnswers, greeted: TtlMap[str, bool]):
        self._router = router
        self._answers = answers
        self._greeted = greeted

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self.on_message)
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)

    async def on_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        team = team_of(body, context)
        await self._recall_thread(event, team)
        ask = self._router.route(
            event,
            team=team,
            bot_user_id=str(context.bot_user_id or ""),
            event_id=str(body.get("event_id") or ""),
        )
        if ask is not None:
            await self._answers.accept(ask)

    async def _recall_thread(self, event: dict[str, Any], team: str) -> None:
        """A reply in a channel thread this replica does not know: another replica may follow it
        (Socket Mode spreads events over every replica's connection; HTTP mode balances them)."""
        threads = self._answers.threads
        channel, thread = str(event.get("channel") or ""), event.get("thread_ts")
        if threads is None or not thread or thread == event.get("ts") or channel.startswith("D"):
            return
        local = thread_id(channel, str(thread))
        if self._router.threads.get(local) is None:
            owner = await threads.owner(f"{team}/{local}")
            if owner is not None:
                self._router.threads.set(local, owner)

    async def on_home_opened(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        """Dify's opening statement, once, when someone first opens the bot's DM."""
        if event.get("tab") != "messages" or not event.get("channel"):
            return
        user, channel = str(event.get("user")), str(event["channel"])
        if not self._greeted.add_new(user, True):
            return
        team = team_of(body, context)
        profile = await self._answers.inbox.facts(PLATFORM, workspace=team, channel=channel)
        if not profile.opening_statement:
            return
        try:
            history = await client.conversations_history(channel=channel, limit=1)
            if history.get("messages"):
                return  # not the first visit: the DM already has messages
            labels = self._answers.labels()
            blocks = body_blocks(profile.opening_statement, markdown_blocks=True)
            blocks += suggestion_blocks(profile.starter_questions, labels)
            text = fallback_text(profile.opening_statement)
            await client.chat_postMessage(channel=channel, blocks=blocks, text=text)
        except SlackApiError as exc:
            log.warning("could not show the opening statement: %s", slack_error(exc))

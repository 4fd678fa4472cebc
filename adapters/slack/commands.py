"""``/dify``: ask a question where it was typed, ``/dify new`` to start over, ``/dify help``.

Where the bot can post (its DM, channels it is in) the question is shown and answered like a
mention, in a thread the bot then follows. Elsewhere (other people's DMs, channels it is not in)
posting fails with ``channel_not_found``/``not_in_channel``, and the answer comes through the
command's ``response_url`` instead (``respond()``).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from adapters.slack.answers import SlackAnswers
from adapters.slack.blocks import asked_block, fallback_text
from adapters.slack.events import PLATFORM, Router
from adapters.slack.listeners import team_of
from adapters.slack.sender import slack_error
from bot.models import ConversationKey, IncomingMessage, Scope

log = logging.getLogger(__name__)

COMMAND = "/dify"
_NOT_HERE = frozenset({"channel_not_found", "not_in_channel", "is_archived"})


class DifyCommand:
    def __init__(self, router: Router, answers: SlackAnswers) -> None:
        self._router = router
        self._answers = answers

    def register(self, app: AsyncApp) -> None:
        # routing: the routes file may name more slash commands, each routed to its app.
        for name in dict.fromkeys((COMMAND, *self._answers.inbox.commands(PLATFORM))):
            app.command(name)(self.on_command)

    async def on_command(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        text = str(command.get("text") or "").strip()
        word = text.lower()
        team = team_of(command, context)
        user, channel = str(command.get("user_id")), str(command.get("channel_id"))
        name = str(command.get("command") or COMMAND)
        locale = self._answers.inbox.locale(PLATFORM, workspace=team, channel=channel, command=name)
        if not text or word in ("help", "?"):
            await ack(text=self._answers.text("slack_help", locale))
            return
        if word in ("new", "reset"):
            await self._answers.inbox.reset(self._fallback_key(team, user, channel))
            await ack(text=self._answers.text("reset", locale))
            return
        await ack()
        # Bolt sends the ack when this listener returns (process_before_response): the rest,
        # which talks to Slack and may wait on rate limits, runs afterwards.
        self._answers.later(self._ask(command, respond, context, text))

    async def _ask(
        self, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext, text: str
    ) -> None:
        team = team_of(command, context)
        user, channel = str(command.get("user_id")), str(command.get("channel_id"))
        bot = str(context.bot_user_id or "")
        try:
            ts = await self._show_question(channel, user, text)
        except SlackApiError as exc:
            if slack_error(exc) not in _NOT_HERE:
                raise
            trigger = str(command.get("trigger_id") or "")
            await self._answer_by_respond(
                respond, team=team, user=user, channel=channel, text=text, trigger=trigger,
                name=str(command.get("command") or COMMAND),
            )  # fmt: skip
            return
        event = {"type": "app_mention", "channel": channel, "ts": ts, "user": user, "text": text}
        ask = self._router.route(event, team=team, bot_user_id=bot)
        if ask is not None:  # routing: the command picks the app
            await self._answers.accept(ask, command=str(command.get("command") or COMMAND))

    async def _show_question(self, channel: str, user: str, text: str) -> str:
        """Slash commands leave no message behind: post the question, to answer under it."""
        response = await self._answers.client.chat_postMessage(
            channel=channel, blocks=[asked_block(user, text)], text=fallback_text(text)
        )
        return str(response["ts"])

    async def _answer_by_respond(
        self,
        respond: AsyncRespond,
        *,
        team: str,
        user: str,
        channel: str,
        text: str,
        trigger: str,
        name: str = COMMAND,
    ) -> None:
        """Where the bot cannot post, the answer goes through the command's response_url."""
        key = self._fallback_key(team, user, channel)
        message = IncomingMessage(
            platform=PLATFORM,
            workspace=team,
            user_id=user,
            text=text,
            key=key,
            message_id=f"{channel}:command:{trigger}",
            channel_id=channel,
            command=name,
        )
        where = {"response_url": respond.response_url, "user": user, "question": text}
        accepted = await self._answers.inbox.accept(message, where=where)
        if accepted.answer is not None:
            self._answers.track(accepted.answer)

    @staticmethod
    def _fallback_key(team: str, user: str, channel: str) -> ConversationKey:
        """The caller's own conversation for ``/dify`` outside threads: their DM conversation
        in the bot's DM, one per (user, channel) elsewhere, so nothing leaks between places."""
        scope_id = user if channel.startswith("D") else f"{user}@{channel}"
        return ConversationKey(PLATFORM, team, Scope.USER, scope_id)

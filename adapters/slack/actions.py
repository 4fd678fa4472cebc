"""Buttons: Stop (Dify's stop API), 👍/👎 (Dify's feedback API), suggested questions (ask them)."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.answers import SlackAnswers
from adapters.slack.blocks import ASK_PREFIX, FEEDBACK_DISLIKE, FEEDBACK_LIKE, STOP, asked_block
from adapters.slack.events import Router, key_from_stop_value
from adapters.slack.listeners import team_of
from adapters.slack.sender import slack_error
from bot.errors import DifyError

log = logging.getLogger(__name__)


class ButtonActions:
    def __init__(self, router: Router, answers: SlackAnswers) -> None:
        self._router = router
        self._answers = answers

    def register(self, app: AsyncApp) -> None:
        app.action(STOP)(self.on_stop)
        app.action(re.compile(f"^({FEEDBACK_LIKE}|{FEEDBACK_DISLIKE})$"))(self.on_feedback)
        app.action(re.compile(f"^{ASK_PREFIX}\\d+$"))(self.on_ask)

    async def on_stop(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()  # bolt sends it when the listener returns: the work runs afterwards
        self._answers.later(self._stop(body, action, context))

    async def _stop(
        self, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        key = key_from_stop_value(str(action.get("value") or ""), team_of(body, context))
        stopped = False
        if key is not None:
            try:
                stopped = await self._answers.inbox.stop(key)
            except DifyError as exc:
                log.warning("Dify refused to stop: %s", exc)
        if not stopped:
            await self._tell(body, "slack_nothing_to_stop")

    async def on_feedback(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        await ack()
        self._answers.later(self._feedback(body, action))

    async def _feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        message_id, _, rest = str(action.get("value") or "").partition("|")
        dify_user, _, app = rest.partition("|")  # routing: buttons posted before it have no app
        rating = "like" if action.get("action_id") == FEEDBACK_LIKE else "dislike"
        try:
            await self._answers.inbox.feedback(app, message_id, user=dify_user, rating=rating)
        except DifyError as exc:
            log.warning("Dify refused feedback: %s", exc)
            await self._tell(body, "error")
            return
        await self._tell(body, "slack_feedback_thanks")

    async def on_ask(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        """A suggested question, asked by whoever clicked it, in the place it was offered."""
        await ack()
        self._answers.later(self._ask(body, action, context, client))

    async def _ask(
        self,
        body: dict[str, Any],
        action: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        question = str(action.get("value") or "").strip()
        channel = str((body.get("channel") or {}).get("id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        if not question or not channel:
            return
        thread = (body.get("message") or {}).get("thread_ts") or (body.get("container") or {}).get(
            "thread_ts"
        )
        try:
            posted = await client.chat_postMessage(
                channel=channel,
                thread_ts=thread,
                blocks=[asked_block(user, question)],
                text=question,
            )
        except SlackApiError as exc:
            log.warning("could not ask a suggested question: %s", slack_error(exc))
            return
        event = {"type": "app_mention", "channel": channel, "user": user, "text": question}
        event["ts"] = str(posted["ts"])
        if thread:
            event["thread_ts"] = str(thread)
        ask = self._router.route(
            event, team=team_of(body, context), bot_user_id=str(context.bot_user_id or "")
        )
        if ask is not None:
            await self._answers.accept(ask)

    async def _tell(self, body: dict[str, Any], text_key: str) -> None:
        """A note only the clicker sees, next to the message they clicked on."""
        channel = (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        thread = (body.get("message") or {}).get("thread_ts")
        if not channel or not user:
            return
        try:
            await self._answers.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread, text=self._answers.text(text_key)
            )
        except SlackApiError as exc:
            log.info("could not post an ephemeral note: %s", slack_error(exc))

"""Turning an ``Ask`` into a running answer: the reply, its labels, and the dispatcher call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Labels
from adapters.slack.budget import Budgets
from adapters.slack.events import Ask
from adapters.slack.memory import TtlMap
from adapters.slack.people import People
from adapters.slack.places import Place, ReplyOptions
from adapters.slack.profile import AppProfile
from adapters.slack.reply import SlackReply
from adapters.slack.sender import SlackSender
from bot.delivery.inbox import Dispatcher
from bot.errors import DifyError
from bot.files.answers import AnswerFiles
from bot.models import Answer, IncomingMessage, Scope
from storage.threads import FollowedThreads

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class SlackAnswers:
    """Everything a listener needs to answer: one per adapter."""

    dispatcher: Dispatcher
    client: AsyncWebClient  # without rate-limit retry handlers: replies handle 429 themselves
    budgets: Budgets
    profile: AppProfile
    options: ReplyOptions
    sleep: Sleep = asyncio.sleep
    files: AnswerFiles | None = None  # answer files re-posted natively
    running: set[asyncio.Task[None]] = field(default_factory=set)
    # routing: which slash command started a thread (72 h, this process only).
    thread_commands: TtlMap[str, str] = field(default_factory=lambda: TtlMap(72 * 3600.0))
    people: People | None = None  # SLACK_USER_LOOKUP: askers' names and locales
    threads: FollowedThreads | None = None  # followed threads, shared by every replica
    thread_ttl: float = 72 * 3600.0

    def labels(self, locale: str | None = None) -> Labels:
        texts = self.dispatcher.texts
        return Labels.from_texts(lambda key: texts.get(key, locale))

    def text(self, key: str, locale: str | None = None) -> str:
        return self.dispatcher.texts.get(key, locale)

    def sender(self, team: str) -> SlackSender:
        budget = self.budgets.for_team(team)
        return SlackSender(self.client, budget, sleep=self.sleep, later=self.later)

    def reply(self, place: Place, locale: str | None = None) -> SlackReply:
        return SlackReply(
            self.sender(place.team),
            place,
            labels=self.labels(locale),
            options=self.options,
            suggest=self._suggestions,
            files=self.files,
        )

    async def accept(self, ask: Ask, *, command: str = "") -> asyncio.Task[None] | None:
        """Record the message in the journal (before bolt acks the event) and answer it once;
        None for a redelivery some replica already took."""
        message = await self._routed(ask, command)
        if self.threads is not None and message.key.scope is Scope.THREAD:
            # Another replica may get the next reply in this thread: tell them all we follow it.
            key = f"{message.workspace}/{message.key.scope_id}"
            await self.threads.follow(key, message.user_id, ttl=self.thread_ttl)
        task = await self.dispatcher.accept(
            message, self.reply(ask.place, message.locale), where=place_to_record(ask.place)
        )
        return None if task is None else self.track(task)

    async def _routed(self, ask: Ask, command: str) -> IncomingMessage:
        """routing: the message keyed to its app, in the asker's language when Slack told us
        (SLACK_USER_LOOKUP). A thread a routed slash command started stays with its app."""
        thread = f"{ask.place.channel}:{ask.place.thread_ts}"
        if command:
            self.thread_commands.set(thread, command)
        command = command or self.thread_commands.get(thread) or ""
        message, locale = ask.message, None
        if self.people is not None:
            person = await self.people.get(ask.place.team, ask.place.user)
            message = replace(message, user_name=person.name or message.user_name)
            locale = person.locale or None
        return self.dispatcher.routing.apply(message, command=command, user_locale=locale)

    def restore(self, where: dict[str, Any], state: dict[str, Any] | None) -> SlackReply:
        """Another replica's unfinished answer: edit the messages it posted, post no new one."""
        resume = [str(ts) for ts in (state or {}).get("messages", ())]
        place = place_from_record(where)
        return SlackReply(
            self.sender(place.team),
            place,
            labels=self.labels(),
            options=self.options,
            suggest=self._suggestions,
            resume=resume,
            files=self.files,
        )

    def later(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a listener's slow part after bolt has sent the ack (process_before_response)."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("Slack listener work failed")

        return self.track(asyncio.create_task(run()))

    def track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Answers this adapter started, so ``drain`` can wait for them (tests, shutdown logs)."""
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def drain(self) -> None:
        """Until every answer started so far has ended."""
        while self.running:
            await asyncio.wait(set(self.running))

    async def _suggestions(self, answer: Answer) -> list[str]:
        if not (await self.profile.get()).suggestions_after_answer:
            return []
        try:
            async with asyncio.timeout(15):
                dify = self.dispatcher.apps.get(answer.app, self.dispatcher.dify)  # routing: app
                return await dify.suggested(answer.message_id, user=answer.dify_user)
        except (DifyError, TimeoutError) as exc:
            log.info("no suggested questions: %s", exc)
            return []


def place_to_record(place: Place) -> dict[str, Any]:
    return asdict(place)


def place_from_record(record: dict[str, Any]) -> Place:
    return Place(**record)

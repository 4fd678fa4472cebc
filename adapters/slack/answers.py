"""Turning an ``Ask`` into a running answer: the inbox call, and the reply when its turn comes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Labels
from adapters.slack.events import Ask, TtlMap
from adapters.slack.reply import Place, ReplyOptions, SlackReply
from adapters.slack.respond import RespondReply
from adapters.slack.sender import SlackSender, slack_error
from bot.contract import Delivery, Inbox, Reply
from bot.delivery.scheduler import Scheduler
from bot.files.answers import AnswerFiles
from bot.models import IncomingMessage, Scope
from bot.stores import FollowedThreads

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class SlackAnswers:
    """Everything a listener needs to answer: one per adapter."""

    inbox: Inbox
    client: AsyncWebClient  # without rate-limit retry handlers: replies handle 429 themselves
    scheduler: Scheduler  # one account per workspace, shared by every replica
    options: ReplyOptions
    sleep: Sleep = asyncio.sleep
    files: AnswerFiles | None = None  # answer files re-posted natively
    running: set[asyncio.Task[None]] = field(default_factory=set)
    # Which slash command started a thread (72 h): the thread's later messages go to that
    # command's app. A cache of what ``threads`` shares with every replica.
    thread_commands: TtlMap[str, str] = field(default_factory=lambda: TtlMap(72 * 3600.0))
    people: People | None = None  # SLACK_USER_LOOKUP: askers' names and locales
    threads: FollowedThreads | None = None  # followed threads, shared by every replica
    thread_ttl: float = 72 * 3600.0

    def labels(self, locale: str | None = None) -> Labels:
        return Labels.from_texts(lambda key: self.inbox.text(key, locale))

    def text(self, key: str, locale: str | None = None) -> str:
        return self.inbox.text(key, locale)

    def sender(self, team: str) -> SlackSender:
        budget = self.scheduler.account(team)
        return SlackSender(self.client, budget, sleep=self.sleep, later=self.later)

    def reply(self, delivery: Delivery) -> Reply:
        """``bot.contract.Platform.reply``: the reply for a journal entry, new or taken over
        (then it edits the messages the earlier attempt posted instead of posting anew)."""
        where, locale = delivery.where, delivery.message.locale
        if "response_url" in where:
            labels, limit = self.labels(locale), self.options.message_limit
            return RespondReply.restore(where, delivery, labels=labels, limit=limit)
        place = place_from_record(dict(where))
        resume = [str(ts) for ts in (delivery.state or {}).get("messages", ())]
        return SlackReply(
            self.sender(place.team),
            place,
            labels=self.labels(locale),
            options=self.options,
            suggest=self.inbox.suggestions,
            resume=resume,
            files=self.files,
            save=delivery.save,
        )

    async def accept(
        self, ask: Ask, *, command: str = "", where: dict[str, Any] | None = None
    ) -> asyncio.Task[None] | None:
        """Record the message in the journal (before bolt acks the event) and answer it once;
        None for a redelivery some replica already took. ``where`` overrides the place (the
        ``/dify`` answer through a response_url)."""
        message = await self._asked(ask, command)
        if self.threads is not None and message.key.scope is Scope.THREAD:
            # Another replica may get the next reply in this thread: tell them all we follow it.
            key = f"{message.workspace}/{message.key.scope_id}"
            await self.threads.follow(key, message.user_id, ttl=self.thread_ttl)
        accepted = await self.inbox.accept(message, where=where or place_to_record(ask.place))
        return None if accepted.answer is None else self.track(accepted.answer)

    async def _asked(self, ask: Ask, command: str) -> IncomingMessage:
        """The message with what the core routes it by: the slash command (a thread a routed
        command started stays with its app) and the asker's language when Slack told us
        (SLACK_USER_LOOKUP)."""
        thread = f"{ask.place.channel}:{ask.place.thread_ts}"
        if command:
            await self._remember_command(ask.place.team, thread, command)
        else:
            command = await self._command_of(ask.place.team, thread)
        message = replace(ask.message, command=command)
        if self.people is not None:
            person = await self.people.get(ask.place.team, ask.place.user)
            message = replace(
                message, user_name=person.name or message.user_name,
                user_locale=person.locale or None,
            )  # fmt: skip
        return message

    async def _remember_command(self, team: str, thread: str, command: str) -> None:
        """Which slash command started ``thread``: here, and for every replica (the shared
        followed-threads store, its first owner staying) so the thread's later messages go
        to that command's app whichever replica gets them."""
        self.thread_commands.set(thread, command)
        if self.threads is not None:
            key = f"command/{team}/{thread}"
            await self.threads.follow(key, command, ttl=self.thread_ttl)

    async def _command_of(self, team: str, thread: str) -> str:
        known = self.thread_commands.get(thread)
        if known is not None or self.threads is None:
            return known or ""
        shared = await self.threads.owner(f"command/{team}/{thread}")
        if shared:
            self.thread_commands.set(thread, shared)
        return shared or ""

    def later(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a listener's slow part after bolt has sent the ack (process_before_response)."""

        async def run() -> None:
            try:
                await work
            except Exception:  # this task's boundary: one listener's failure stays its own
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


def place_to_record(place: Place) -> dict[str, Any]:
    return asdict(place)


def place_from_record(record: dict[str, Any]) -> Place:
    return Place(**record)


# ---- who asks ----------------------------------------------------------------------------------
# A Slack user's display name and locale (``users.info``), cached a day. Slack events carry
# neither, so with SLACK_USER_LOOKUP the bot looks each asker up once: the locale picks the
# language of the bot's own texts, the name fills an app's ``user_name`` input. It needs the
# ``users:read`` scope; without it (``missing_scope``) lookups stop for good.

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

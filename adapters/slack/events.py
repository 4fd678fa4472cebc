"""Which Slack events the bot answers, and their translation to ``IncomingMessage`` + ``Place``.

Rules (slack.md §4): DMs are always answered; in channels an ``app_mention`` starts (or joins) a
thread, and plain messages are answered only in threads the bot follows. The ``message`` event
that accompanies an ``app_mention`` (same post, different event_id) is left to the mention
handler; retries of an event (same event_id) and second deliveries of a post (same channel+ts)
are dropped. Edits, deletions, joins and other bots' posts (unless allowed) are ignored; bolt
already drops the bot's own messages and the ``message_changed`` events its edits cause.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from adapters.slack.files import to_attachments
from adapters.slack.reply import Place
from bot.models import Attachment, ConversationKey, IncomingMessage, Scope

PLATFORM = "slack"
_ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "bot_message"})
_SPACES = re.compile(r"[ \t]+")
_SLACK_TOKEN = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


@dataclass(frozen=True, slots=True)
class Ask:
    """A message to answer and where the answer goes."""

    message: IncomingMessage
    place: Place


@dataclass(frozen=True, slots=True)
class RouteOptions:
    allow_bots: bool = False
    dm_threads: bool = False
    channel_scope: str = "thread"  # thread | channel | user


class Router:
    """Decides, per event, whether and where to answer; remembers the threads it joins."""

    def __init__(self, threads: TtlMap[str, str], seen: TtlMap[str, bool], options: RouteOptions):
        self.threads = threads
        self._seen = seen
        self._options = options

    def route(
        self, event: dict[str, Any], *, team: str, bot_user_id: str, event_id: str = ""
    ) -> Ask | None:
        if event_id and not self._seen.add_new(f"event:{event_id}", True):
            return None  # a retry of an event this process already took
        if not self._is_answerable(event, bot_user_id):
            return None
        channel, ts = str(event["channel"]), str(event["ts"])
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        if event.get("type") == "message" and not is_dm and not self._follows(event, bot_user_id):
            return None
        text = clean_text(str(event.get("text") or ""), bot_user_id)
        files = to_attachments(event)  # a file alone is a question too
        if not (text or files) or not self._seen.add_new(f"post:{channel}:{ts}", True):
            return None
        user = str(event.get("user") or event.get("bot_id") or "")
        if is_dm:
            thread = event.get("thread_ts") or (ts if self._options.dm_threads else None)
            key = ConversationKey(PLATFORM, team, Scope.USER, user)
            place = Place(channel, thread, team, user)
            return _ask(key, user, text, place, message_id=ts, files=files)
        thread = str(event.get("thread_ts") or ts)
        key, owner = self._channel_key(event, team, thread, bot_user_id)
        self.threads.set(thread_id(channel, thread), owner)
        place = Place(channel, thread, team, user)
        return _ask(key, owner, text, place, message_id=ts, files=files)

    def _is_answerable(self, event: dict[str, Any], bot_user_id: str) -> bool:
        subtype = event.get("subtype")
        if (
            not isinstance(subtype, str | None)
            or subtype not in _ANSWERED_SUBTYPES
            or not event.get("channel")
            or not event.get("ts")
        ):
            return False
        if event.get("user") == bot_user_id:
            return False
        is_bot = bool(event.get("bot_id")) or subtype == "bot_message"
        return self._options.allow_bots or not is_bot

    def _follows(self, event: dict[str, Any], bot_user_id: str) -> bool:
        """A channel message: answered only inside a followed thread, and not if it mentions
        the bot (the ``app_mention`` event for the same post answers it)."""
        thread = event.get("thread_ts")
        if not thread or thread == event.get("ts") or f"<@{bot_user_id}>" in str(event.get("text")):
            return False
        return self.threads.get(thread_id(str(event["channel"]), str(thread))) is not None

    def _channel_key(
        self, event: dict[str, Any], team: str, thread: str, bot_user_id: str
    ) -> tuple[ConversationKey, str]:
        """The conversation key and its Dify user. Dify ties a conversation to one user, so a
        shared conversation always uses the same one: the thread's owner (whoever started the
        bot's part in it; after a restart, the thread's author), or the channel itself."""
        channel, user = str(event["channel"]), str(event.get("user") or event.get("bot_id"))
        scope = self._options.channel_scope
        if scope == "channel":
            return ConversationKey(PLATFORM, team, Scope.CHANNEL, channel), channel
        if scope == "user":
            return ConversationKey(PLATFORM, team, Scope.USER, user), user
        parent = str(event.get("parent_user_id") or "")
        owner = self.threads.get(thread_id(channel, thread))
        owner = owner or (parent if parent and parent != bot_user_id else user)
        return ConversationKey(PLATFORM, team, Scope.THREAD, thread_id(channel, thread)), owner


def thread_id(channel: str, thread_ts: str) -> str:
    return f"{channel}:{thread_ts}"


def stop_value(key: ConversationKey) -> str:
    """What the Stop button carries to find the running answer again."""
    return f"{key.scope.value}|{key.scope_id}"


def key_from_stop_value(value: str, team: str) -> ConversationKey | None:
    scope, _, scope_id = value.partition("|")
    if scope not in Scope.__members__.values() or not scope_id:
        return None
    return ConversationKey(PLATFORM, team, Scope(scope), scope_id)


def clean_text(text: str, bot_user_id: str) -> str:
    """Slack's wire text as a person would read it: the bot's mention removed, links and
    channel names unwrapped, ``&amp;``/``&lt;``/``&gt;`` decoded."""
    text = text.replace(f"<@{bot_user_id}>", " ")

    def unwrap(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("#C") or target.startswith("!subteam"):
            return f"#{label}" if label else target
        if target.startswith("!"):
            return "@" + (label or target[1:])
        if target.startswith("@"):
            return match.group(0)  # another user's mention stays an id Dify can echo back
        return f"{label} ({target})" if label and label != target else target

    text = _SLACK_TOKEN.sub(unwrap, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return _SPACES.sub(" ", text).strip()


def _ask(
    key: ConversationKey,
    owner: str,
    text: str,
    place: Place,
    *,
    message_id: str,
    files: tuple[Attachment, ...] = (),
) -> Ask:
    place = Place(place.channel, place.thread_ts, place.team, place.user, stop_value(key))
    message = IncomingMessage(
        platform=PLATFORM,
        workspace=key.workspace,
        user_id=owner,
        text=text,
        key=key,
        message_id=f"{place.channel}:{message_id}",
        attachments=files,
        user_name=place.user,
        channel_id=place.channel,
        author_id=place.user,
    )
    return Ask(message, place)


# ---- what this process remembers ----------------------------------------------------------------
# Threads it follows and events it handled, in memory and bounded (the threads every replica
# follows are also in the database: bot.stores.FollowedThreads).

K = TypeVar("K")
V = TypeVar("V")


class TtlMap(Generic[K, V]):
    """A bounded map whose entries expire ``ttl`` seconds after they were last set."""

    def __init__(
        self, ttl: float, *, max_size: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._items[key]
            return None
        return value

    def set(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl, value)
        self._evict()

    def add_new(self, key: K, value: V) -> bool:
        """Set ``key`` unless it is already there; True when it was new (dedup)."""
        if self.get(key) is not None:
            return False
        self.set(key, value)
        return True

    def _evict(self) -> None:
        now = self._clock()
        # Oldest first: expired heads go, and the map never outgrows max_size.
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now and len(self._items) <= self._max_size:
                break
            del self._items[key]

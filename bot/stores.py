"""What the core and the platforms keep in the database: Protocols the storage package implements.

The core never imports ``storage``: the composition root builds the SQL implementations and hands
them in. Every store here is shared by all replicas (one PostgreSQL), or lives in one SQLite file
for a single process; each method is one short transaction.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.models import ConversationKey

State = dict[str, Any]
# A change of a reply's state: the state as stored (None: none yet) to the state to store.
StateChange = Callable[[State | None], State | None]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One recorded platform message: what it was, where its answer goes, how far it got."""

    id: int
    message_key: str
    conversation_key: str
    platform: str
    message: dict[str, Any]
    reply: dict[str, Any]  # the adapter's ``where``: enough to build the reply anywhere
    reply_state: State | None  # what the reply has shown (its messages, its delivery state)
    status: str  # pending | running | done | failed
    owner: str | None
    attempts: int
    lease_until: datetime | None = None  # None once finished or released: nobody holds it
    shown: bool = False  # some of the answer was shown before its replica let go
    place: str = ""  # the adapter's name for the chat place (a user's DM, a thread)
    created_at: float = 0.0  # Unix seconds
    run: State | None = None  # the Dify run answering it: {"id": workflow_run_id, "shown": text}

    @property
    def open(self) -> bool:
        return self.status in ("pending", "running")


class ConversationStore(Protocol):
    """Which Dify conversation each chat place continues."""

    async def get(self, key: ConversationKey) -> str | None: ...

    async def set(self, key: ConversationKey, conversation_id: str, *, dify_user: str) -> None: ...

    async def delete(self, key: ConversationKey) -> bool: ...


class Journal(Protocol):
    """Every platform message, recorded before the platform is acknowledged: deduplicated by its
    key, leased to one replica at a time, ordered within its conversation, finished once."""

    lease: float  # seconds a replica may stay silent before its entries are orphans

    async def record(
        self,
        message_key: str,
        *,
        conversation_key: str,
        platform: str,
        message: dict[str, Any],
        reply: dict[str, Any],
        owner: str,
        place: str = "",
        done: bool = False,
    ) -> tuple[int, bool]:
        """(entry id, True if new); ``done``: recorded for deduplication only."""

    async def claim(self, entry_id: int, owner: str) -> bool:
        """Take (or keep) the lease, if the entry is open, its lease is ours or expired, and no
        older message of its conversation is still open."""

    async def claim_many(self, entry_ids: Iterable[int], owner: str) -> set[int]: ...

    async def renew_many(self, entry_ids: Iterable[int], owner: str) -> set[int]: ...

    async def not_ours(self, entry_ids: Iterable[int], owner: str) -> set[int]: ...

    async def finish(self, entry_id: int, owner: str, *, failed: bool = False) -> None: ...

    async def release(self, entry_id: int, owner: str) -> None: ...

    async def release_owned(self, owner: str) -> int: ...

    async def mark_shown(self, entry_id: int) -> None: ...

    async def save_reply_state(self, entry_id: int, state: State) -> None: ...

    async def save_run(self, entry_id: int, run: State) -> None:
        """The Chatflow/Workflow run answering the entry (``id``) and the text shown so far
        (``shown``): whoever answers it next reattaches to that run."""

    async def get(self, entry_id: int) -> JournalEntry | None: ...

    async def orphans(
        self, *, platforms: Iterable[str], limit: int = 100
    ) -> builtins.list[JournalEntry]: ...

    async def prune(self, *, older_than: float) -> int: ...


class ReplyStates(Protocol):
    """A reply's delivery state in its journal entry, for platforms whose answer is delivered
    by several requests, possibly on several replicas (WeChat's passive replies and pushes, the
    WeCom AI bot's refresh polls): read it, change it atomically, find a place's recent ones."""

    async def get(self, entry_id: int) -> JournalEntry | None: ...

    async def change(self, entry_id: int, change: StateChange) -> State | None:
        """Apply ``change`` to the stored state under a row lock; the state now stored."""

    async def recent(self, place: str, *, since: float) -> builtins.list[JournalEntry]:
        """The entries of ``place`` recorded after ``since`` (Unix seconds), oldest first."""

    async def keep(self, entry_id: int, *, until: float) -> None:
        """Do not prune this entry before ``until`` (an answer still owed to its user)."""


@dataclass(frozen=True, slots=True)
class StoredToken:
    token: str
    expires_at: float  # Unix seconds


class TokenStore(Protocol):
    """Platform access tokens shared by replicas, so none of them invalidates another's."""

    async def get(self, name: str) -> StoredToken | None: ...

    async def put(self, name: str, token: str, *, expires_at: float) -> None: ...

    async def discard(self, name: str, token: str) -> None: ...


class FollowedThreads(Protocol):
    """Threads a platform answers in without a new mention, shared by replicas."""

    async def follow(self, key: str, owner: str, *, ttl: float) -> None: ...

    async def owner(self, key: str) -> str | None: ...


class SeenCallbacks(Protocol):
    """Replay memory of signed callbacks (timestamp, nonce, signature), shared by replicas."""

    async def first_time(self, scope: str, *parts: str) -> bool: ...


class Membership(Protocol):
    """This process's place among the replicas: the id its leases are held under."""

    replica_id: str

    async def beat(self) -> bool: ...

    async def leave(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingForm:
    """A Human Input form shown to a user, waiting for an answer (kept so a click works after a
    restart and on any replica).

    ``ref`` is ours (the platforms put it in their buttons; Dify's ``token`` never leaves the
    core). ``status``: ``open`` → ``claimed`` (one replica is submitting it) → ``submitted``, or
    ``expired``; a claim that failed goes back to ``open``. ``native``: shown with the platform's
    own buttons; otherwise the conversation's next messages answer it (the text fallback), the
    fields gathered so far in ``inputs``. ``entry_id`` is the journal entry whose reply shows it
    (its reply state says where), ``shown`` the answer text above the form.
    """

    ref: str
    token: str
    app: str
    platform: str
    conversation_key: str
    dify_user: str
    workflow_run_id: str
    asker: str
    native: bool
    form: dict[str, Any]
    message: dict[str, Any]
    where: dict[str, Any]
    entry_id: int
    shown: str = ""
    status: str = "open"
    inputs: dict[str, Any] | None = None
    expires_at: float | None = None
    answered_by: str = ""


class FormStore(Protocol):
    """Pending Human Input forms, shared by every replica."""

    async def add(self, form: PendingForm) -> None: ...

    async def get(self, ref: str) -> PendingForm | None: ...

    async def open_in(self, conversation_key: str) -> PendingForm | None:
        """The newest open text-fallback form of a conversation (its next message answers it)."""

    async def claim(self, ref: str, *, by: str) -> bool:
        """``open`` → ``claimed`` in one conditional UPDATE: True for exactly one caller."""

    async def settle(self, ref: str, status: str, *, inputs: dict[str, Any] | None = None) -> None:
        """Set the status (``open`` again after a refused submit, ``submitted``, ``expired``)."""

    async def gather(self, ref: str, inputs: dict[str, Any], *, native: bool | None = None) -> None:
        """The text fallback's fields answered so far (``native=False``: from now on the
        conversation's messages answer the form, as in the text fallback)."""

    async def answered(self, entry_id: int) -> PendingForm | None:
        """The form a journal entry answered (a replica taking that entry over resumes it)."""


class Budgets(Protocol):
    """Token buckets of rate-limited platform calls and their "blocked until" times (a 429's
    Retry-After), keyed ``platform/account/method[/channel]`` and shared by every replica."""

    async def take(self, key: str, *, rate: float, burst: float, keep: float = 0.0) -> float:
        """Take one token when the key is not blocked and more than ``keep`` + 1 are there:
        0.0; else the seconds until one could be taken (nothing taken). ``rate`` is tokens
        per second, ``burst`` the bucket's size (a new bucket starts full)."""
        ...

    async def block(self, key: str, *, seconds: float) -> None:
        """No token of ``key`` for ``seconds`` (its bucket is spent: the platform said so)."""
        ...

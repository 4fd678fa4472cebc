"""The platform contract: the one door a platform has into the core, and what it hands the core.

    adapter ──accept(message, where)──► Inbox ──► journal: record (dedup), lease, order
                                                          │ the entry's turn, on any replica
    Platform.reply(Delivery) ◄────────────────────────────┘
        └─► Reply: start · update · status · finish · fail   (driven by the answerer)
                   show_form (optional: FormReply)       a Dify run waits for a person
    adapter ──answer_form(ref, action, inputs, user)──► Inbox: the click on a form's button

A platform package builds one frozen ``Platform``: its ``Adapter`` (connections and webhook
routes), ``reply`` (the only way a reply is made, for a new message and for one taken over
from a replica that died alike, so every platform can be taken over), ``files`` (where
attachments come from) and its ``allowlist``. It talks to the core only through
``Inbox``: accept a normalized message, stop or reset a conversation, the app's facts, feedback,
a localized text, a form's answer. The core routes each message to its app from the fields the
adapter filled in (workspace, channel, command, the user's locale); adapters never route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from bot.files.downloads import FileSource
from bot.models import Answer, AppFacts, ConversationKey, FormRequest, IncomingMessage

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplyCapabilities:
    """What a platform reply can do.

    ``can_edit``: progressive updates are possible (Slack, WeCom AI bot, a terminal); when False the
    platform gets one final answer (WeChat OA, WeCom app). ``max_length``: one platform message's
    limit, measured by ``measure`` (``chars`` or ``utf8`` bytes); longer answers are split at
    paragraph/sentence boundaries by the reply (``bot.text.split_text``). ``min_interval``: the
    shortest time between two visible edits, in seconds.
    """

    can_edit: bool = True
    max_length: int = 40_000
    measure: str = "chars"
    min_interval: float = 1.0


class Reply(Protocol):
    """One answer as the platform shows it. Every method receives the whole text so far, so calls
    are idempotent and coalescing is trivial; limits, formatting and retries live inside."""

    capabilities: ReplyCapabilities

    async def start(self) -> None:
        """Show a sign of life (placeholder post, typing indicator, "thinking…" status)."""

    async def update(self, text: str) -> None:
        """Show the answer so far (only called when ``capabilities.can_edit``)."""

    async def status(self, text: str) -> None:
        """Show a one-line progress status (tool call, workflow node); ``""`` clears it."""

    async def finish(self, text: str, answer: Answer) -> None:
        """Show the final answer; ``answer`` carries ids, usage, sources and files."""

    async def fail(self, text: str, notice: str) -> None:
        """The answer could not be completed: keep ``text`` (maybe empty) and add ``notice``."""


@dataclass(frozen=True, slots=True)
class FormView:
    """A Dify Human Input form as a platform shows it.

    ``ref`` names it to the core: put it in the buttons, and hand it back to
    ``Inbox.answer_form`` with the chosen action's id and the fields' values. ``text`` is the
    form's Markdown without the field placeholders. A form with ``form.fields`` needs their
    values before an action can be taken (Slack: a modal opened from the button).
    """

    ref: str
    form: FormRequest
    text: str


@runtime_checkable
class FormReply(Protocol):
    """A reply that shows forms with the platform's own buttons or cards (optional).

    A reply without ``show_form`` gets the core's text fallback with no work on its side: the
    form's text ends the answer with numbered choices ("reply 1 to Approve"), the fields are
    asked one by one, and the conversation's next messages answer the form instead of Dify.
    """

    async def show_form(self, text: str, form: FormView) -> None:
        """Show the answer so far (``text``) ending with ``form``'s text and its actions; like
        ``finish``, this is the reply's last call (the run resumes in a reply built again from
        the saved state, on whichever replica takes the click)."""


class FormVerdict(StrEnum):
    """What became of an answer to a form (``Inbox.answer_form``)."""

    SUBMITTED = "submitted"  # taken: the run goes on in the form's reply
    ALREADY = "already"  # someone answered it first: remove the buttons
    EXPIRED = "expired"  # too late: remove the buttons
    INVALID = "invalid"  # Dify refused the values: ``notice`` says why, the form stays open
    NOT_ALLOWED = "not_allowed"  # this user may not answer it
    UNKNOWN = "unknown"  # no such form (forgotten long ago)
    FAILED = "failed"  # Dify could not be asked: the form stays open, try again
    ASKING = "asking"  # the form has fields: ``notice`` asks the first; messages answer them


@dataclass(frozen=True, slots=True)
class FormAnswer:
    """``verdict`` and, unless submitted, a short ``notice`` in the user's language."""

    verdict: FormVerdict
    notice: str = ""
    elsewhere: bool = False  # ALREADY: answered outside this bot (nothing here redraws it)

    @property
    def closed(self) -> bool:
        """The form can no longer be answered: its buttons should go."""
        return self.verdict in (FormVerdict.SUBMITTED, FormVerdict.ALREADY, FormVerdict.EXPIRED)


class Adapter(Protocol):
    """A platform's connections: webhook routes are added when it is built, ``start`` opens
    outbound ones (Socket Mode, long polling), ``stop`` stops taking messages before the core
    finishes the answers in flight, and ``close`` releases what those answers used (API
    clients, background tasks) once the core has finished them or handed them over."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """A journal entry whose turn has come, handed to its platform to build the reply.

    ``where`` is what the adapter gave ``accept`` (JSON-safe: channel, thread, user...);
    ``state`` what an earlier attempt's reply saved (None the first time): a reply built from a
    state continues what was shown (edits the messages already posted) instead of starting
    anew. ``save`` keeps the reply's state in the journal for whoever may take over."""

    entry_id: int
    message: IncomingMessage
    where: Mapping[str, Any]
    save: Callable[[State], Awaitable[None]]
    state: Mapping[str, Any] | None = None
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Who may ask on one platform: empty sets allow everyone; a non-empty set must contain the
    message's workspace, channel or author."""

    workspaces: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    def allows(self, message: IncomingMessage) -> bool:
        return (
            _within(self.workspaces, message.workspace)
            and _within(self.channels, message.channel_id)
            and _within(self.users, message.author)
        )

    @classmethod
    def of(cls, *, workspaces: str = "", channels: str = "", users: str = "") -> Allowlist:
        """From comma-separated settings."""
        return cls(_ids(workspaces), _ids(channels), _ids(users))


def _within(allowed: frozenset[str], value: str | None) -> bool:
    return not allowed or (value is not None and value in allowed)


def _ids(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Platform:
    """What a platform package hands the core, built once from its settings."""

    name: str
    adapter: Adapter
    reply: Callable[[Delivery], Reply]
    files: FileSource | None = None
    allowlist: Allowlist | None = None
    takeover: bool = True  # another replica may finish its answers (the terminal: no)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``accept`` did: the journal entry, whether it was new (False: a redelivery, taken
    here or on another replica), and the answer's task when it runs in this process."""

    entry_id: int
    new: bool
    answer: asyncio.Task[None] | None = None


class Inbox(Protocol):
    """The core, as a platform adapter sees it."""

    async def accept(
        self, message: IncomingMessage, *, where: Mapping[str, Any], answer: bool = True
    ) -> Accepted:
        """Record the message (await this before acknowledging the platform), then answer it
        once, on some replica. ``answer=False`` records it only, to drop its redeliveries (a
        command the adapter handles itself)."""

    async def stop(self, key: ConversationKey) -> bool:
        """Stop the conversation's running answer; False if none runs here."""

    async def reset(self, key: ConversationKey) -> bool:
        """Forget the conversation (under every app): its next message starts a new one."""

    def text(self, key: str, locale: str | None = None) -> str:
        """One of the bot's own texts (the platform's own included), in ``locale``."""

    def locale(
        self, platform: str, *, workspace: str = "", channel: str = "", command: str = ""
    ) -> str | None:
        """The language a route sets for this place (None: the platform's default)."""

    def commands(self, platform: str) -> list[str]:
        """The slash commands the routes name on ``platform``."""

    async def facts(
        self, platform: str, *, workspace: str = "", channel: str = "", command: str = ""
    ) -> AppFacts:
        """What the app this place is routed to offers: its opening statement and starter
        questions, whether it suggests follow-up questions."""

    async def suggestions(self, answer: Answer) -> list[str]:
        """Dify's suggested follow-up questions for an answer ([] when off or failing)."""

    async def feedback(self, app: str, message_id: str, *, user: str, rating: str | None) -> None:
        """Dify message feedback (``like``/``dislike``/None) for an answer of ``app``."""

    async def form(self, ref: str) -> FormView | None:
        """A form shown earlier (to build its fields' dialog); None once it is forgotten."""

    async def answer_form(
        self,
        ref: str,
        *,
        action: str,
        inputs: Mapping[str, Any],
        user: str,
        locale: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> FormAnswer:
        """A person (``user``: the platform's user id) answered a form shown by a reply: the
        core checks they may, submits it once across replicas, and continues the run in the
        form's reply, or, given ``where`` (as for ``accept``), in a reply built for that place
        (a platform whose form reply cannot change any more). ``inputs`` maps field names to
        values."""

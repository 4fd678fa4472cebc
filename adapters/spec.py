"""What every platform package exports, and what the composition root hands each one.

A platform package (``adapters/<name>/``) exports one ``PlatformSpec``: its settings (a pydantic
model of its environment variables, merged into difybot's one ``Settings``), the credentials
that turn it on (all or nothing), its ``difybot check`` probes, and ``build``, which returns the
frozen ``bot.contract.Platform`` from the settings and the ``Services`` the root built. The root
lists the specs (``difybot/platforms.py``): adding a platform is one package and one line there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bot.contract import Inbox, Platform
from bot.delivery.buckets import MemoryBudgets
from bot.files.answers import AnswerFiles
from bot.files.downloads import GuardedFetch
from bot.ops.metrics import Metrics
from bot.stores import Budgets, FollowedThreads, ReplyStates, SeenCallbacks, TokenStore
from bot.texts import Table

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``difybot check``: what was checked, what was found, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# A named probe: called by ``difybot check``, it asks the real service and says what it found.
Probe = tuple[str, Callable[[], Awaitable[list[Check]]]]


@dataclass(frozen=True, slots=True)
class Credentials:
    """A platform's credential set: all or nothing. Setting any of ``required``, ``one_of`` or
    ``optional`` turns the platform on, and then every ``required`` one and at least one of
    ``one_of`` must be set too (Slack's two modes, each with its own secret). Names are the
    settings' field names (their variables in upper case)."""

    required: tuple[str, ...]
    one_of: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.required, *self.one_of, *self.optional)

    def present(self, settings: BaseModel) -> set[str]:
        return {name for name in self.names if getattr(settings, name, None) is not None}

    def problem(self, title: str, settings: BaseModel) -> str:
        """ "" when the set is complete or entirely absent, else one line saying what is missing."""
        present = self.present(settings)
        if not present:
            return ""
        missing = [name.upper() for name in self.required if name not in present]
        if self.one_of and not present & set(self.one_of):
            missing.append(" or ".join(name.upper() for name in self.one_of))
        if not missing:
            return ""
        given = ", ".join(name.upper() for name in self.names if name in present)
        verb = "is" if len(present) == 1 else "are"
        return (
            f"{title} is half configured: {given} {verb} set, but not "
            f"{' nor '.join(missing)}; set those too, or unset {given} to leave it off"
        )


@dataclass(frozen=True)
class Services:
    """What the composition root hands a platform's ``build``: the core's one door (``inbox``),
    the web app its webhook routes go on (every route through ``adapters.webhooks``' guard),
    the shared stores it may need, file plumbing, metrics, and the clock."""

    inbox: Inbox
    web: web.Application
    tokens: TokenStore
    threads: FollowedThreads
    callbacks: SeenCallbacks
    states: ReplyStates
    fetch: GuardedFetch
    answer_files: AnswerFiles
    metrics: Metrics
    conversation_scope: str = ""  # CONVERSATION_SCOPE: "" = the platform's default
    # Token buckets of rate-limited calls for bot.delivery.scheduler (shared on PostgreSQL).
    budgets: Budgets = field(default_factory=MemoryBudgets)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class PlatformSpec(Generic[S]):
    """One platform, as its package declares it (module-level, cheap to import: ``build`` and
    ``probes`` import the platform's heavier modules only when it is configured)."""

    name: str  # the routes file's and the journal's name for it
    title: str  # how one line of an error names it ("Slack", "the WeCom app")
    settings: type[S]
    credentials: Credentials
    build: Callable[[S, Services], Platform]
    probes: Callable[[S], Sequence[Probe]] = lambda _: ()
    texts: Table = field(default_factory=dict)

    def enabled(self, settings: BaseModel) -> bool:
        return bool(self.credentials.present(settings))

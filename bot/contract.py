"""The seams between the core and the platforms: how a reply is shown and what it can do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.models import Answer


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


class Adapter(Protocol):
    """A platform connection. Webhook adapters add their routes to the web app when built;
    ``start`` opens outbound connections (Socket Mode), ``stop`` closes them before the
    dispatcher finishes the answers in flight."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


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


@runtime_checkable
class Resumable(Protocol):
    """A reply another replica can take over: it reports what it has shown so far (e.g. the
    ids of the messages it posted) through ``save``, and a restored reply given that state
    edits those messages instead of posting new ones."""

    def bind_state(self, save: Callable[[dict[str, Any]], Awaitable[None]]) -> None: ...


# Rebuilds a platform reply from the adapter's description of where to answer and the saved state.
Restorer = Callable[[dict[str, Any], dict[str, Any] | None], Reply]

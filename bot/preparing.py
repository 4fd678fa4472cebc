"""Turning a message into what Dify is asked: the query, uploaded files, the app's inputs.

Adapters and features plug in here (attachments upload-then-reference, voice transcription,
per-app ``inputs`` from the message context) without the dispatcher knowing the details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.dify.client import DifyClient
from bot.errors import DifybotError
from bot.models import IncomingMessage


@dataclass(frozen=True, slots=True)
class Prepared:
    """The request parts for one message; ``notes``: lines shown above the answer (a file
    that was left out), already in the user's language."""

    query: str
    files: tuple[dict[str, Any], ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Unanswerable(DifybotError):
    """The message cannot go to Dify as it is (a file the app cannot take, an empty voice
    note). The message is the one sentence to tell the user, already in their language."""


Prepare = Callable[[IncomingMessage, DifyClient], Awaitable[Prepared]]


async def as_is(message: IncomingMessage, dify: DifyClient) -> Prepared:
    """The default: the text as the query, nothing else."""
    return Prepared(query=message.text)

"""Where a Slack answer goes, how it may be shown, and what it has shown so far."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Place:
    """Where an answer goes and who asked: ``thread_ts`` None means top level (a plain DM)."""

    channel: str
    thread_ts: str | None
    team: str
    user: str
    stop_value: str = ""


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    native_streaming: bool = True
    markdown_blocks: bool = True
    feedback: bool = True
    message_limit: int = 12_000  # markdown blocks hold 12,000 characters per message
    min_interval: float = 1.0


@dataclass(slots=True)
class PostedMessage:
    ts: str
    shown: str = ""


@dataclass(slots=True)
class ShownState:
    messages: list[PostedMessage] = field(default_factory=list)
    status: str = ""
    text: str = ""

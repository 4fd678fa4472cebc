"""The messages the fake Slack holds: posted, edited, streamed, deleted — what a person sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streamed: str = ""  # Markdown received through chat.*Stream
    streaming: bool = False
    edits: int = 0

    @property
    def body(self) -> str:
        """The answer text shown: streamed Markdown, markdown/section blocks, or ``text``."""
        parts = [self.streamed] if self.streamed else []
        parts += [
            _block_text(block)
            for block in self.blocks
            if block.get("type") in ("markdown", "section")
        ]
        if not parts and not self.blocks:
            parts = [self.text]
        return "\n".join(part for part in parts if part)

    def action_ids(self) -> list[str]:
        return [
            element.get("action_id", "")
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ]

    def context(self) -> str:
        return " ".join(
            element.get("text", "")
            for block in self.blocks
            if block.get("type") == "context"
            for element in block.get("elements", [])
        )


def _block_text(block: dict[str, Any]) -> str:
    text = block.get("text")
    return str(text.get("text", "")) if isinstance(text, dict) else str(text or "")


class SlackMessages:
    def __init__(self, bot_user: str, bot_id: str) -> None:
        self.bot_user, self.bot_id = bot_user, bot_id
        self.all: dict[str, Message] = {}

    def content(self, args: dict[str, Any]) -> str:
        probe = Message("", "", None, str(args.get("text") or ""), list(args.get("blocks") or []))
        return probe.body

    def post(self, ts: str, args: dict[str, Any]) -> dict[str, Any]:
        thread = args.get("thread_ts") or None
        message = Message(str(args["channel"]), ts, thread, str(args.get("text") or ""),
                          list(args.get("blocks") or []))  # fmt: skip
        self.all[ts] = message
        return {"channel": message.channel, "ts": ts, "message": self._shape(message)}

    def update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.all.get(str(args.get("ts")))
        if message is None or message.channel != args.get("channel"):
            return {"error": "message_not_found"}
        message.text = str(args.get("text") or "")
        message.blocks = list(args.get("blocks") or [])
        message.streamed, message.streaming = "", False  # an edit replaces a streamed body
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def delete(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.all.pop(str(args.get("ts")), None) is None:
            return {"error": "message_not_found"}
        return {"channel": args.get("channel"), "ts": args.get("ts")}

    def start_stream(self, ts: str, args: dict[str, Any]) -> dict[str, Any]:
        message = Message(str(args["channel"]), ts, str(args["thread_ts"]), streaming=True)
        message.streamed = _chunk_text(args)
        self.all[ts] = message
        return {"channel": message.channel, "ts": ts}

    def append_stream(self, args: dict[str, Any], *, stop: bool) -> dict[str, Any]:
        message = self.all.get(str(args.get("ts")))
        if message is None or not message.streaming:
            return {"error": "message_not_in_streaming_state"}
        message.streamed += _chunk_text(args)
        if stop:
            message.streaming = False
            message.blocks = list(args.get("blocks") or [])
        return {"channel": message.channel, "ts": message.ts}

    def history(self, channel: str) -> list[dict[str, Any]]:
        top = [m for m in self.all.values() if m.channel == channel and m.thread_ts in (None, m.ts)]
        return [self._shape(m) for m in reversed(top)]

    def in_channel(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """Messages in a channel (top level), or in one thread when ``thread_ts`` is given."""
        return [m for m in self.all.values() if m.channel == channel and m.thread_ts == thread_ts]

    def _shape(self, message: Message) -> dict[str, Any]:
        shaped = {"type": "message", "text": message.text, "user": self.bot_user,
                  "bot_id": self.bot_id, "ts": message.ts, "blocks": message.blocks}  # fmt: skip
        if message.thread_ts:
            shaped["thread_ts"] = message.thread_ts
        return shaped


def _chunk_text(args: dict[str, Any]) -> str:
    text = str(args.get("markdown_text") or "")
    for chunk in args.get("chunks") or []:
        if chunk.get("type") == "markdown_text":
            text += str(chunk.get("text") or "")
    return text

"""Slack payloads for tests: the captured shapes in tests/payloads/slack/, with fields changed."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).parent.parent / "payloads" / "slack"
_ids = itertools.count(100)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def event_body(name: str, *, event_id: str | None = None, **event: Any) -> dict[str, Any]:
    """An ``event_callback`` body from a captured payload, with a fresh event_id by default."""
    body = copy.deepcopy(load(name))
    body["event"].update(event)
    body["event_id"] = event_id or f"Ev{next(_ids):010d}"
    return body


def dm(
    text: str, *, ts: str, user: str = "U111", channel: str = "D111", **extra: Any
) -> dict[str, Any]:
    return event_body(
        "event_message_im", text=text, ts=ts, event_ts=ts, user=user, channel=channel, **extra
    )


def mention(
    text: str, *, ts: str, channel: str = "C111", user: str = "U111", **extra: Any
) -> dict[str, Any]:
    fields = {"ts": ts, "event_ts": ts, "channel": channel, "user": user, **extra}
    return event_body("event_app_mention", text=f"<@UBOT> {text}", **fields)


def thread_reply(
    text: str,
    *,
    ts: str,
    thread_ts: str,
    channel: str = "C111",
    user: str = "U222",
    parent: str = "U111",
) -> dict[str, Any]:
    fields = {"ts": ts, "event_ts": ts, "channel": channel, "thread_ts": thread_ts, "user": user}
    return event_body("event_message_thread_reply", text=text, parent_user_id=parent, **fields)


def command(
    text: str, *, channel: str = "C111", user: str = "U111", response_url: str = ""
) -> dict[str, Any]:
    body = load("command_dify")
    body.update(text=text, channel_id=channel, user_id=user, trigger_id=f"1.2.{next(_ids)}")
    body["response_url"] = response_url or body["response_url"]
    body["channel_name"] = "directmessage" if channel.startswith("D") else "general"
    return body


def click(
    action_id: str,
    value: str,
    *,
    channel: str,
    message_ts: str,
    thread_ts: str | None = None,
    user: str = "U111",
) -> dict[str, Any]:
    body = copy.deepcopy(load("block_actions"))
    body["user"]["id"] = user
    body["channel"]["id"] = channel
    body["container"].update(message_ts=message_ts, channel_id=channel, thread_ts=thread_ts)
    body["message"].update(ts=message_ts, thread_ts=thread_ts)
    if thread_ts is None:
        del body["container"]["thread_ts"], body["message"]["thread_ts"]
    body["actions"][0].update(action_id=action_id, block_id=action_id, value=value)
    return body

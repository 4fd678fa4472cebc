"""What Slack posts to ``/slack/events``, read the way bolt reads it, refused unless Slack-shaped.

Bolt parses a body it has verified without guarding anything: a form ``payload`` that is not a
JSON object, or an ``event`` that is a string, raises inside it (HTTP 500, which Slack retries).
A signed body can still be malformed (a bug on the sender's side, a replay of something that
was never Slack's), so ``to_payload`` reads it first as bolt will, and ``check_shape`` holds it
to the shapes Slack sends (Events API, interactivity, slash commands: slack.md §2-3) in every
field the listeners read. Anything else is a ``CallbackRejected`` 400 with its reason for the log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from bot.errors import CallbackRejected

# Event fields the listeners read as strings; Slack never sends them as anything else.
_EVENT_STRINGS = ("type", "channel", "ts", "thread_ts", "user", "text", "subtype", "bot_id",
                  "channel_type", "tab", "event_ts", "parent_user_id", "team")  # fmt: skip
_TOP_STRINGS = ("type", "team_id", "api_app_id", "event_id", "token", "enterprise_id")
_OBJECTS = ("user", "channel", "team", "message", "container", "view", "enterprise")


def to_payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload bolt will see: JSON for ``application/json`` or a body starting with ``{``,
    else a form whose ``payload`` field (interactivity) is JSON; always a JSON object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackRejected("body is not UTF-8") from None
    if content_type == "application/json" or text.startswith("{"):
        return _object(text, "JSON body")
    form = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in text:  # bolt's own test: the word anywhere makes it read ``payload``
        return _object(form["payload"], "payload field") if "payload" in form else {}
    return form


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise CallbackRejected(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise CallbackRejected(f"{what} is {type(value).__name__}, not an object")
    return value


def check_shape(payload: dict[str, Any]) -> None:
    """Refuse a payload whose fields have types Slack never sends."""
    _strings(payload, _TOP_STRINGS, "")
    for name in _OBJECTS:
        value = payload.get(name)
        if value is not None and not isinstance(value, dict | str):
            raise CallbackRejected(f"{name} is {type(value).__name__}")
    kind = payload.get("type")
    if kind == "url_verification" and not isinstance(payload.get("challenge"), str):
        raise CallbackRejected("url_verification without a string challenge")
    if kind == "event_callback" or "event" in payload:  # bolt's middleware reads any ``event``
        _check_event(payload.get("event"))
    if "actions" in payload:
        _check_actions(payload["actions"])
    if "authorizations" in payload and not _dicts(payload["authorizations"]):
        raise CallbackRejected("authorizations is not a list of objects")


def _check_event(event: object) -> None:
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise CallbackRejected("event_callback without an event object")
    _strings(event, _EVENT_STRINGS, "event.")
    if "files" in event and not _dicts(event["files"]):
        raise CallbackRejected("event.files is not a list of objects")


def _check_actions(actions: object) -> None:
    if not isinstance(actions, list) or not actions or not _dicts(actions):
        raise CallbackRejected("actions is not a list of objects")
    for action in actions:
        _strings(action, ("action_id", "value", "block_id", "type"), "action.")


def _strings(fields: dict[str, Any], names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise CallbackRejected(f"{prefix}{name} is {type(value).__name__}, not a string")


def _dicts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)

"""What the fake LINE Messaging API checks in a message array before it sends anything, and the
error bodies it answers with (reference: #error-responses, #message-objects, #quick-reply).

LINE answers a request body that breaks a rule with 400 and
``{"message": "The request body has N error(s)", "details": [{"message", "property"}]}``; nothing
in that request is sent (and a reply token stays unused). Text is counted in UTF-16 code units
(🍎 is two), but action labels, ``displayText`` and message-action ``text`` in grapheme clusters
(docs: messaging-api/text-character-count).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

MAX_MESSAGES = 5  # per reply / push call
MAX_TEXT = 5000  # text message
MAX_URL = 2000  # image originalContentUrl / previewImageUrl
MAX_QUICK_REPLY_ITEMS = 13
MAX_QUICK_REPLY_LABEL = 20
MAX_POSTBACK_DATA = 300
MAX_ACTION_TEXT = 300  # postback displayText, message action text

MESSAGE_TYPES = (
    "text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template",
    "flex", "coupon",
)  # fmt: skip
ACTION_TYPES = (
    "postback", "message", "uri", "datetimepicker", "camera", "cameraRoll", "location",
    "richmenuswitch", "clipboard",
)  # fmt: skip

Details = list[dict[str, str]]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def grapheme_len(text: str) -> int:
    """Grapheme clusters, near enough for labels: combining marks, variation selectors, skin
    tones and ZWJ sequences join the character before; two regional indicators make one flag."""
    count, joined, flag_half = 0, False, False
    for char in text:
        point = ord(char)
        extends = (
            unicodedata.combining(char) > 0
            or 0xFE00 <= point <= 0xFE0F
            or 0x1F3FB <= point <= 0x1F3FF
            or point == 0x200D
        )
        regional = 0x1F1E6 <= point <= 0x1F1FF
        if not (extends or joined or (regional and flag_half)):
            count += 1
        joined = point == 0x200D
        flag_half = regional and not flag_half
    return count


def error(message: str, details: Details | None = None) -> dict[str, Any]:
    """LINE's error body: ``details`` is left out when it would be empty."""
    return {"message": message, **({"details": details} if details else {})}


def invalid_body(details: Details) -> dict[str, Any]:
    return error(f"The request body has {len(details)} error(s)", details)


def check_messages(messages: object) -> Details:
    """Every rule a reply/push ``messages`` array breaks, with LINE's property paths."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        return [_detail("messages", f"Size must be between 1 and {MAX_MESSAGES}")]
    details: Details = []
    for index, message in enumerate(messages):
        details.extend(_check_message(f"messages[{index}]", message))
    return details


def _detail(prop: str, message: str) -> dict[str, str]:
    return {"message": message, "property": prop}


def _length(
    prop: str,
    value: object,
    maximum: int,
    *,
    required: bool = True,
    count: Callable[[str], int] = utf16_len,
) -> Details:
    if value is None or value == "":
        return [_detail(prop, "May not be empty")] if required else []
    if not isinstance(value, str):
        return [_detail(prop, "Must be a string")]
    if count(value) > maximum:
        return [_detail(prop, f"Length must be between 0 and {maximum}")]
    return []


def _check_message(prop: str, message: object) -> Details:
    if not isinstance(message, Mapping):
        return [_detail(prop, "Must be an object")]
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        allowed = ", ".join(MESSAGE_TYPES)
        return [_detail(f"{prop}.type", f"Must be one of the following values: [{allowed}]")]
    details: Details = []
    if kind == "text":
        details += _length(f"{prop}.text", message.get("text"), MAX_TEXT)
    elif kind == "image":
        for key in ("originalContentUrl", "previewImageUrl"):
            details += _https_url(f"{prop}.{key}", message.get(key))
    if "quickReply" in message:
        details += _check_quick_reply(f"{prop}.quickReply", message["quickReply"])
    return details


def _https_url(prop: str, value: object) -> Details:
    """Image URLs must be HTTPS (TLS 1.2 or later), at most 2000 characters."""
    details = _length(prop, value, MAX_URL)
    if not details and not str(value).lower().startswith("https://"):
        details.append(_detail(prop, "Must be a valid HTTPS URL"))
    return details


def _check_quick_reply(prop: str, quick_reply: object) -> Details:
    items = quick_reply.get("items") if isinstance(quick_reply, Mapping) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUICK_REPLY_ITEMS:
        return [_detail(f"{prop}.items", f"Size must be between 1 and {MAX_QUICK_REPLY_ITEMS}")]
    details: Details = []
    for index, item in enumerate(items):
        where = f"{prop}.items[{index}]"
        if not isinstance(item, Mapping) or item.get("type") != "action":
            details.append(
                _detail(f"{where}.type", "Must be one of the following values: [action]")
            )
            continue
        details += _check_action(f"{where}.action", item.get("action"))
    return details


def _check_action(prop: str, action: object) -> Details:
    if not isinstance(action, Mapping) or action.get("type") not in ACTION_TYPES:
        allowed = ", ".join(ACTION_TYPES)
        return [_detail(f"{prop}.type", f"Must be one of the following values: [{allowed}]")]
    # A quick-reply button shows its action's label: required, 20 characters at most.
    shown = grapheme_len
    details = _length(f"{prop}.label", action.get("label"), MAX_QUICK_REPLY_LABEL, count=shown)
    if action["type"] == "postback":
        details += _length(f"{prop}.data", action.get("data"), MAX_POSTBACK_DATA)
        details += _length(
            f"{prop}.displayText", action.get("displayText"), MAX_ACTION_TEXT, required=False,
            count=shown,
        )  # fmt: skip
    elif action["type"] == "message":
        details += _length(f"{prop}.text", action.get("text"), MAX_ACTION_TEXT, count=shown)
    return details

"""Telegram's pure parts: updates normalized (over captured payloads), Markdown as Telegram HTML
(checked by the fake's parser, Telegram's rules), the Bot API's errors typed, the pacer's waits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram.api import TelegramError, to_error
from adapters.telegram.formatting import to_html, to_parts
from adapters.telegram.inbound import BotIdentity, to_incoming, to_update
from adapters.telegram.keyboard import (
    Action,
    answer_keyboard,
    closed_keyboard,
    form_keyboard,
    to_action,
)
from adapters.telegram.pacer import TelegramPacer
from adapters.telegram.settings import parse_group_scopes
from bot.contract import FormView
from bot.errors import BadFormatting, MessageTooLong
from bot.models import FormAction, FormRequest, Scope
from tests.fakes.replies import JumpingClock
from tests.fakes.telegram_html import parse_html

PAYLOADS = Path(__file__).parent / "payloads" / "telegram"
BOT = BotIdentity(7012345678, "dify_fake_bot")


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "kind", "text", "command"),
    [
        ("private_text", "ask", "What can Dify do with my PDFs?", ""),
        ("private_text_unicode", "ask", "👋 /help @dify_fake_bot naïve 𝔘nicode", ""),
        ("private_command_start", "command", "", "start"),
        ("private_command_new", "command", "", "new"),
        ("private_photo", "ask", "What is on this chart?", ""),
        ("private_document", "ask", "summarise please", ""),
        ("private_voice", "ask", "", ""),
        ("group_mention", "ask", "what is RAG?", ""),
        ("basic_group_mention", "ask", "hey summarise this", ""),
        ("group_command_ask", "ask", "how do I add a knowledge base?", ""),
        ("group_reply_to_bot", "ask", "and how much does it cost?", ""),
        ("group_anonymous_admin", "ask", "post the rules", ""),
        ("forum_topic_message", "ask", "the upload fails with 413", ""),
        ("group_chatter", "ignore", "", ""),
        ("edited_message", "ignore", "", ""),
        ("my_chat_member_added", "ignore", "", ""),
        ("stopped_message_generation", "stop", "", ""),
        ("callback_query", "press", "", ""),
    ],
)
def test_updates_are_normalized(name: str, kind: str, text: str, command: str) -> None:
    update = to_update(payload(name), BOT)
    assert (update.kind, update.text, update.command) == (kind, text, command)
    assert update.update_id == payload(name)["update_id"]


def test_attachments_name_the_largest_photo_the_document_and_the_voice_note() -> None:
    (photo,) = to_update(payload("private_photo"), BOT).attachments
    sizes = payload("private_photo")["message"]["photo"]
    assert photo.platform_id == sizes[-1]["file_id"] and photo.mime_type == "image/jpeg"
    (document,) = to_update(payload("private_document"), BOT).attachments
    raw = payload("private_document")["message"]["document"]
    assert (document.name, document.mime_type) == (raw["file_name"], raw["mime_type"])
    (voice,) = to_update(payload("private_voice"), BOT).attachments
    assert voice.voice and voice.mime_type == "audio/ogg" and voice.size == 9871


def test_conversation_keys_follow_the_scope() -> None:
    private = to_incoming(to_update(payload("private_text"), BOT), BOT, scope="thread")
    assert (private.key.scope, private.key.scope_id) == (Scope.USER, str(private.author))
    assert private.message_id == str(payload("private_text")["update_id"])
    topic = to_incoming(to_update(payload("forum_topic_message"), BOT), BOT, scope="thread")
    assert topic.key.scope_id == "-1001555000111:topic:301"
    assert topic.user_id == "chat-1001555000111" and topic.author == "283746501"
    group = to_update(payload("group_reply_to_bot"), BOT)
    chain = to_incoming(group, BOT, scope="thread", root=4400)
    assert (chain.key.scope, chain.key.scope_id) == (Scope.THREAD, f"{group.chat_id}:4400")
    member = to_incoming(group, BOT, scope="user")
    assert member.key.scope_id == f"{group.chat_id}:{group.user_id}"
    assert member.user_id == str(group.user_id)
    whole = to_incoming(group, BOT, scope="chat")
    assert (whole.key.scope, whole.key.scope_id) == (Scope.CHANNEL, str(group.chat_id))


def test_a_forum_topics_creation_message_is_no_reply_chain() -> None:
    update = to_update(payload("forum_topic_message"), BOT)
    assert update.thread_id == 301 and update.reply_to is None


def test_another_bots_command_and_a_bare_mention() -> None:
    raw = payload("group_command_ask")
    raw["message"]["text"] = "/ask@other_bot hello"
    raw["message"]["entities"][0]["length"] = len("/ask@other_bot")
    assert to_update(raw, BOT).kind == "ignore"
    bare = payload("group_mention")
    bare["message"]["text"] = "@dify_fake_bot"
    assert to_update(bare, BOT).command == "help"


@pytest.mark.parametrize("raw", [[], {"message": {}}, {"update_id": "1"}, None])
def test_what_is_no_update_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match="update_id"):
        to_update(raw, BOT)


# ---- Markdown → Telegram HTML -------------------------------------------------------------------

CORPUS = (PAYLOADS / "markdown_corpus.md").read_text()


@pytest.mark.parametrize(
    ("markdown", "text", "types"),
    [
        ("**b** *i* ~~s~~ `c`", "b i s c", ["bold", "italic", "strikethrough", "code"]),
        ("# Title", "Title", ["bold"]),
        ("[x](https://dify.ai)", "x", ["text_link"]),
        ("a < b & c > d", "a < b & c > d", []),
        ("```js\nif (a<b) {}\n```", "if (a<b) {}", ["pre"]),
        ("> quoted", "quoted", ["blockquote"]),
        ("- a\n- b", "• a\n• b", []),
        ("<b>raw</b>", "<b>raw</b>", []),
        ("[rel](/docs)", "rel (/docs)", []),
    ],
)
def test_markdown_becomes_html_telegram_parses(markdown: str, text: str, types: list[str]) -> None:
    parsed, entities = parse_html(to_html(markdown))
    assert parsed == text
    assert [e["type"] for e in entities] == types


def test_the_whole_corpus_is_html_telegram_accepts() -> None:
    parsed, entities = parse_html(to_html(CORPUS))
    kinds = {e["type"] for e in entities}
    assert {"bold", "italic", "strikethrough", "code", "pre", "text_link", "blockquote"} <= kinds
    assert "<angle>" in parsed and "5 < 6 > 4" in parsed


def test_long_answers_split_at_paragraphs_and_never_inside_code() -> None:
    paragraph = "word " * 150
    code = "```\n" + "x = 1\n" * 600 + "```"
    parts = to_parts("\n\n".join([paragraph] * 10 + [code, paragraph]))
    assert len(parts) > 2
    for part in parts:
        text, _ = parse_html(part)
        assert len(text) <= 4096
        assert part.count("<pre>") == part.count("</pre>")


# ---- errors, buttons, settings, pacing ----------------------------------------------------------


def test_captured_errors_are_typed() -> None:
    flood = to_error("sendMessage", 429, payload("error_429"))
    assert (flood.status, flood.retry_after) == (429, 7.0)
    assert isinstance(to_error("sendMessage", 400, payload("error_parse_entities")), BadFormatting)
    assert to_error("editMessageText", 400, payload("error_not_modified")).not_modified
    proxy = to_error("getMe", 502, None)
    assert isinstance(proxy, TelegramError) and proxy.status == 502
    long = to_error("sendMessage", 400, {"description": "Bad Request: message is too long"})
    assert isinstance(long, MessageTooLong)


def test_button_data_decodes_to_typed_actions() -> None:
    keyboard = answer_keyboard(labels=("👍", "👎"), questions=["a" * 100, "b"])
    assert keyboard is not None
    data = [b["callback_data"] for row in keyboard["inline_keyboard"] for b in row]
    assert all(len(d.encode()) <= 64 for d in data)
    assert [to_action(d) for d in data] == [
        Action("ask", 0), Action("ask", 1), Action("like"), Action("dislike"),
    ]  # fmt: skip
    assert to_action("form:x").kind == "unknown"
    assert answer_keyboard(labels=None) is None


def test_a_form_keyboard_has_one_button_per_action_and_decodes_back() -> None:
    actions = (FormAction("approve", "Approve"), FormAction("r" * 40, "R" * 80))
    request = FormRequest("tok", "f1", "human", "Review", "Ship?", actions=actions)
    view = FormView("AbCdEfGhIjKlMnOp", request, "Ship?")  # the core's refs: 16 characters
    keyboard = form_keyboard(view)
    assert keyboard is not None
    rows = keyboard["inline_keyboard"]
    assert [len(row) for row in rows] == [1, 1] and rows[1][0]["text"] == "R" * 59 + "…"
    data = [row[0]["callback_data"] for row in rows]
    assert all(len(d.encode()) <= 64 for d in data)
    assert [to_action(d) for d in data] == [
        Action("form", 0, "AbCdEfGhIjKlMnOp"), Action("form", 1, "AbCdEfGhIjKlMnOp"),
    ]  # fmt: skip
    closed = closed_keyboard("This form has expired.")["inline_keyboard"][0][0]
    assert to_action(closed["callback_data"]) == Action("closed")
    assert to_action("form:ref:x").kind == "unknown" and to_action("form::1").kind == "unknown"
    assert form_keyboard(FormView("r" * 60, request, "")) is None  # never: refs are short


def test_group_scopes_setting() -> None:
    assert parse_group_scopes("-100123:chat, -100456:user") == {-100123: "chat", -100456: "user"}
    with pytest.raises(ValueError, match="thread"):
        parse_group_scopes("-100123:everyone")


async def test_the_pacer_spaces_a_chat_and_obeys_retry_after() -> None:
    clock = JumpingClock()
    pacer = TelegramPacer(clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def call() -> None:
        sent.append(clock.now)

    for _ in range(3):
        await pacer.send(1, call)
    assert sent == [0.0, 1.0, 2.0]
    refusals = [TelegramError("flood", status=429, retry_after=5)]

    async def flooded() -> None:
        if refusals:
            raise refusals.pop()
        sent.append(clock.now)

    await pacer.send(1, flooded)
    assert sent[-1] == 8.0 and pacer.refused == 1  # 3.0 (its turn) + 5 (retry_after)


async def test_the_pacer_keeps_a_group_under_20_a_minute() -> None:
    clock = JumpingClock()
    pacer = TelegramPacer(clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def call() -> None:
        sent.append(clock.now)

    for _ in range(41):
        await pacer.send(-100, call, group=True)
    # The shared scheduler's bucket (half the minute at once, the rest spread): never more than
    # 20 in any 61 s (the minute, and a second of margin), one a second while the burst lasts.
    assert sent[:10] == [float(i) for i in range(10)]
    assert all(later - sent[i] >= 61.0 - 1e-9 for i, later in enumerate(sent[20:]))
    assert sent[40] < 200.0  # then ten a minute: one every 6.1 s


def test_a_code_block_that_fits_a_message_is_never_cut() -> None:
    code = "```sh\n" + "echo step\n" * 300 + "```"  # 3,000 characters
    parts = to_parts("\n\n".join(["intro " * 500, code, "outro"]))
    assert len(parts) == 2
    assert parts[1].startswith('<pre><code class="language-sh">') and parts[1].count("<pre>") == 1


def test_a_sticker_gets_the_help_and_a_service_message_nothing() -> None:
    raw = payload("private_text")
    del raw["message"]["text"]
    pinned = {**raw, "message": {**raw["message"], "pinned_message": {"message_id": 1}}}
    sticker = {**raw, "message": {**raw["message"], "sticker": {"file_id": "x", "emoji": "👍"}}}
    assert to_update(sticker, BOT).command == "help"
    assert to_update(pinned, BOT).kind == "ignore"

"""LINE normalization, table-tested over captured webhook bodies; postback data; message parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.line.inbound import (
    Ask,
    FormChoice,
    Rate,
    asked,
    to_action,
    to_data,
    to_events,
    to_incoming,
    without_mentions,
)
from adapters.line.messages import (
    Button,
    batches,
    form_buttons,
    image_message,
    text_messages,
    utf16_length,
    with_quick_reply,
)
from adapters.plaintext import to_plain_text
from bot.contract import FormView
from bot.models import FormAction, FormRequest, Scope
from tests.fakes.line_checks import check_messages

PAYLOADS = Path(__file__).parent / "payloads" / "line"
BOT = "Ud1f7b0e2a3c4d1f7b0e2a3c45b6a7c8d"


def load(name: str) -> tuple[str, Any]:
    return to_events(json.loads((PAYLOADS / name).read_text()))


# file, expected (text, attachment name, attachment voice) per event; None: nothing to answer
CASES: list[tuple[str, list[tuple[str, str, bool] | None]]] = [
    ("text_user.json", [("東京の天気は？", "", False)]),
    ("text_quote_reply.json", [("これについてもっと詳しく", "", False)]),
    ("text_redelivered.json", [("もう一度", "", False)]),
    ("batch_two_events.json", [("一つ目", "", False), ("二つ目", "", False)]),
    ("text_group_mention.json", [("今日の会議を要約して", "", False)]),
    ("text_room_mention_emoji.json", [("👋 hello @All", "", False)]),
    ("text_group_no_mention.json", [None]),
    ("text_group_other_mention.json", [None]),
    ("image_user.json", [("", "image-", False)]),
    ("image_external.json", [("", "image-", False)]),
    ("audio_user.json", [("", "voice-", True)]),
    ("video_user.json", [("", "video-", False)]),
    ("file_user.json", [("", "議事録.pdf", False)]),
    ("image_set_group.json", [None, None]),  # no mention possible on a file in a group
    ("sticker_user.json", [None]),
    ("location_user.json", [None]),
    ("follow.json", [None]),
    ("unfollow.json", [None]),
    ("unsend_user.json", [None]),
    ("join_group.json", [None]),
    ("leave_group.json", [None]),
    ("postback_feedback.json", [None]),
]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_captured_events_normalize(name: str, expected: list[tuple[str, str, bool] | None]) -> None:
    destination, events = load(name)
    assert destination == BOT
    got = [to_incoming(event, bot=BOT, locale="ja") for event in events]
    assert len(got) == len(expected)
    for message, want in zip(got, expected, strict=True):
        if want is None:
            assert message is None
            continue
        assert message is not None
        text, attachment, voice = want
        assert message.text == text and message.workspace == BOT and message.platform == "line"
        event = events[got.index(message)]
        assert message.message_id == event.event_id  # the journal dedups on webhookEventId
        if attachment:
            (file,) = message.attachments
            assert file.name.startswith(attachment) and file.voice is voice
            assert file.platform_id or file.url


def test_a_file_keeps_its_name_and_size_and_is_read_by_message_id() -> None:
    _, (event,) = load("file_user.json")
    message = to_incoming(event, bot=BOT)
    assert message is not None
    (file,) = message.attachments
    assert (file.name, file.size, file.platform_id) == ("議事録.pdf", 48213, "500000000000000014")


def test_an_external_image_is_read_from_its_url() -> None:
    _, (event,) = load("image_external.json")
    message = to_incoming(event, bot=BOT)
    assert message is not None
    (file,) = message.attachments
    assert file.platform_id is None and str(file.url).startswith("https://")


def test_group_conversations_are_per_group_or_per_member() -> None:
    _, (event,) = load("text_group_mention.json")
    shared = to_incoming(event, bot=BOT)
    own = to_incoming(event, bot=BOT, per_user=True)
    assert shared is not None and own is not None
    group, member = event.chat.id, event.chat.user
    assert (shared.key.scope, shared.key.scope_id) == (Scope.CHANNEL, group)
    assert (shared.user_id, shared.author) == (group, member)
    assert (own.key.scope, own.key.scope_id) == (Scope.USER, f"{member}@{group}")
    assert own.user_id == member and own.channel_id == group


def test_a_redelivery_is_flagged_and_keeps_its_event_id() -> None:
    _, (event,) = load("text_redelivered.json")
    assert event.redelivery and event.event_id


@pytest.mark.parametrize(
    "body",
    [[], {"events": []}, {"destination": "U1", "events": [{"type": "message"}]},
     {"destination": "U1", "events": [{"webhookEventId": "X", "source": {"type": "group"}}]}],
)  # fmt: skip
def test_malformed_bodies_are_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        to_events(body)


def test_postback_data_round_trips_and_foreign_data_is_ignored() -> None:
    rated = Rate("like", "m-1", "sales", f"line:{BOT}:Uabc@Cdef")
    for action in (Ask("東京の天気は？"), rated, Rate("dislike", "m-2"), Rate("like", "m", "a")):
        assert to_action(to_data(action)) == action
    assert len(to_data(Rate("like", "0" * 36, "support-app", f"line:{BOT}:{BOT}"))) < 300
    assert to_action("dify:feedback:like:msg-1") == Rate("like", "msg-1")
    for foreign in ("dify:suggest:2", "richmenu=1", "dify:feedback:meh:m", "dify:ask:  "):
        assert to_action(foreign) is None
    assert len(to_data(Ask("長" * 400))) == 300


def test_a_form_action_round_trips_and_a_broken_one_is_ignored() -> None:
    choice = FormChoice("Zm9ybS1yZWYtMTI", "approve:v2")  # the id is taken whole after the ref
    assert to_data(choice) == "dify:form:Zm9ybS1yZWYtMTI:approve:v2"
    assert to_action(to_data(choice)) == choice
    for broken in ("dify:form:", "dify:form:ref-only", "dify:form::approve", "dify:form:ref:"):
        assert to_action(broken) is None


def test_form_buttons_fit_lines_limits_one_per_action() -> None:
    actions = [FormAction(f"a{n}", f"とても長いアクションのタイトル その{n}") for n in range(15)]
    actions.insert(0, FormAction("x" * 300, "too long to post back"))
    actions.insert(1, FormAction("untitled", ""))
    form = FormRequest("t", "f", "human", "Review", "Pick one", actions=tuple(actions))
    view = FormView("ref1", form, "Pick one")
    message = with_quick_reply({"type": "text", "text": view.text}, form_buttons(view))
    assert check_messages([message]) == []
    actions_sent = [item["action"] for item in message["quickReply"]["items"]]
    assert len(actions_sent) == 13 and all(len(a["label"]) <= 20 for a in actions_sent)
    assert actions_sent[0]["label"] == "untitled"  # no title: its id; one too long: left out
    assert to_action(actions_sent[1]["data"]) == FormChoice("ref1", "a0")
    assert actions_sent[1]["displayText"] == "とても長いアクションのタイトル その0"


def test_a_tapped_question_is_asked_in_the_conversation_of_its_chat() -> None:
    _, (event,) = load("postback_group.json")
    message = asked(event, "次は？", bot=BOT)
    assert message.text == "次は？" and message.key.scope_id == event.chat.id


def test_text_is_cut_in_utf16_units_and_every_part_is_accepted_by_line() -> None:
    text = "\n\n".join(["🍎" * 2400, "あ" * 4000, "short"])
    messages = text_messages(text)
    assert all(utf16_length(m["text"]) <= 5000 for m in messages)
    assert "".join(m["text"] for m in messages).replace("\n", "") == text.replace("\n", "")
    assert all(check_messages(batch) == [] for batch in batches(messages))
    assert [len(b) for b in batches([{"type": "text", "text": "x"}] * 12)] == [5, 5, 2]


def test_quick_reply_buttons_fit_lines_limits() -> None:
    buttons = [Button(f"質問その{n}はとても長いラベルになります", Ask(f"q{n}")) for n in range(15)]
    message = with_quick_reply({"type": "text", "text": "answer"}, buttons)
    assert check_messages([message]) == []
    items = message["quickReply"]["items"]
    assert len(items) == 13 and all(len(i["action"]["label"]) <= 20 for i in items)


def test_only_https_images_become_image_messages() -> None:
    assert image_message("http://example.com/a.png") is None
    assert image_message("https://example.com/" + "a" * 2000) is None
    image = image_message("https://example.com/a.png")
    assert image is not None and check_messages([image]) == []


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("# 見出し\n\n**太字**と*斜体*", "【見出し】\n\n太字と斜体"),
        ("- a\n- b", "• a\n• b"),
        ("[LINE](https://line.me)", "LINE (https://line.me)"),
        ("`x` and\n\n```py\nprint(1)\n```", "x and\n\nprint(1)"),
        ("**「引用」**です", "「引用」です"),
    ],
)
def test_markdown_becomes_plain_text_without_raw_markers(markdown: str, plain: str) -> None:
    assert to_plain_text(markdown) == plain


def test_the_mention_is_cut_and_the_question_keeps_its_lines() -> None:
    text = "@Dify Bot 要約して:\n1. 議題\n2. 結論"
    mention = {"index": 0, "length": 9, "type": "user", "userId": BOT, "isSelf": True}
    message = {"type": "text", "text": text, "mention": {"mentionees": [mention]}}
    assert without_mentions(text, message) == "要約して:\n1. 議題\n2. 結論"


def test_events_in_standby_mode_are_not_answered() -> None:
    _, (event,) = load("text_user.json")
    body = json.loads((PAYLOADS / "text_user.json").read_text())
    body["events"][0]["mode"] = "standby"
    _, (standby,) = to_events(body)
    assert event.kind == "message" and standby.kind == "other"

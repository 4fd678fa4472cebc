"""Feishu's pure parts: event normalization over captured payloads, the card Markdown renderer,
callback crypto (checked with lark-oapi), the long connection's frame codec (checked with
lark-oapi's protobuf schema), and card button values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lark_oapi as lark
import pytest
from lark_oapi.ws.pb.pbbp2_pb2 import Frame as SdkFrame

from adapters.feishu.actions import (
    Ask,
    Feedback,
    Form,
    Stop,
    ask_value,
    form_value,
    stop_value,
    to_action,
    to_pressed,
)
from adapters.feishu.crypto import decrypt, is_signed, signature
from adapters.feishu.frames import DATA, Frame, FrameError, decode, encode
from adapters.feishu.inbound import mentions_bot, to_incoming, to_received
from adapters.feishu.markdown import to_card_markdown
from bot.errors import CallbackRejected
from bot.models import ConversationKey, Scope
from tests.fakes.feishu import BOT_OPEN_ID
from tests.fakes.feishu_events import encrypt

PAYLOADS = Path(__file__).parent / "payloads" / "feishu"
ASKER = "ou_84aad35d084aa403a838cf73ee18467"


def load(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return payload


@pytest.mark.parametrize(
    ("name", "text", "mentioned", "scope", "files"),
    [
        ("event_message_p2p_text.json", None, False, Scope.USER, []),
        ("event_message_group_mention.json", "what's our refund policy for annual plans?", True,
         Scope.THREAD, []),
        ("event_message_group_mention_other.json", "@Wang can you review this?", False,
         Scope.THREAD, []),
        ("event_message_group_plain.json", "lunch at 12?", False, Scope.THREAD, []),
        ("event_message_thread_followup.json", "and for monthly plans?", False, Scope.THREAD, []),
        ("event_message_image.json", "", False, Scope.USER, [("image.png", "image", False)]),
        ("event_message_file.json", "", False, Scope.USER, [("Q3 报告.pdf", "file", False)]),
        ("event_message_audio.json", "", False, Scope.USER, [("voice.opus", "file", True)]),
        ("event_message_media.json", "", False, Scope.USER, [("demo.mp4", "file", False)]),
        ("event_message_post.json",
         "Deploy question\n why does this `helm upgrade` fail?\n[docs](https://docs.dify.ai)",
         True, Scope.THREAD, [("image.png", "image", False)]),
        ("event_message_sticker.json", "", False, Scope.USER, []),
        ("event_message_merge_forward.json", "", False, Scope.USER, []),
    ],
)  # fmt: skip
def test_messages_normalize(
    name: str, text: str | None, mentioned: bool, scope: Scope, files: list[tuple[str, str, bool]]
) -> None:
    payload = load(name)
    received = to_received(payload, bot_open_id=BOT_OPEN_ID)
    message, where = to_incoming(received, locale="en")
    raw = payload["event"]["message"]
    if text is not None:
        assert message.text == text
    assert mentions_bot(received, BOT_OPEN_ID) is mentioned
    assert message.key.scope is scope and message.message_id == raw["message_id"]
    thread_root = raw.get("root_id") or raw["message_id"]
    expected_scope_id = thread_root if scope is Scope.THREAD else ASKER
    assert message.key.scope_id == expected_scope_id
    assert message.workspace == payload["header"]["tenant_key"] == message.key.workspace
    assert where["in_thread"] is (raw["chat_type"] == "group")
    got = [(a.name, (a.platform_id or "").split("/")[2], a.voice) for a in message.attachments]
    assert got == files
    assert all(
        (a.platform_id or "").startswith(raw["message_id"] + "/") for a in message.attachments
    )


def test_p2p_text_and_a_channel_scope() -> None:
    received = to_received(load("event_message_p2p_text.json"))
    message, _ = to_incoming(received, locale="zh", per_chat=True)
    assert message.text and message.key.scope is Scope.CHANNEL
    assert message.key.scope_id == received.chat_id and message.locale == "zh"


@pytest.mark.parametrize(
    "payload",
    [{}, [], {"event": {"message": {"chat_id": "oc_1"}}},
     {"event": {"message": {"message_id": "om_1", "chat_id": "oc_1", "content": "{not json"}}}],
)  # fmt: skip
def test_malformed_events_are_refused(payload: Any) -> None:
    with pytest.raises(CallbackRejected):
        to_received(payload)


@pytest.mark.parametrize(
    ("markdown", "card"),
    [
        ("**bold** *it* ~~gone~~ `a<b`", "**bold** *it* ~~gone~~ `a<b`"),
        ("<at id=all></at> & <font>", "&lt;at id=all&gt;&lt;/at&gt; &amp; &lt;font&gt;"),
        ("![chart](https://x/c.png)", "[chart](https://x/c.png)"),
        ("[Dify](https://dify.ai)", "[Dify](https://dify.ai)"),
        ("```python\nif a < b:\n    pass\n```", "```python\nif a < b:\n    pass\n```"),
        ("- a\n- b\n  1. c", "- a\n- b\n    1. c"),
        ("###### deep", "#### deep"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "| a | b |\n| --- | --- |\n| 1 | 2 |"),
        ("> said\n\n---", "> said\n\n---"),
    ],
)  # fmt: skip
def test_card_markdown(markdown: str, card: str) -> None:
    assert to_card_markdown(markdown) == card


def test_decryption_matches_the_docs_example_and_the_sdk() -> None:
    sample = load("encrypt_sample.json")
    assert decrypt(sample["encrypt_key"], sample["encrypt"]) == b"hello world"
    sealed = encrypt("k", "你好".encode())  # the fake's sealing, which lark-oapi opens too
    assert lark.AESCipher("k").decrypt_str(sealed) == "你好" == decrypt("k", sealed).decode()
    with pytest.raises(CallbackRejected):
        decrypt("another key", sample["encrypt"])
    with pytest.raises(CallbackRejected):
        decrypt("k", "not base64!")


def test_signatures() -> None:
    body = b'{"encrypt": "x"}'
    good = signature("1700000000", "n0nce", "key", body)
    assert is_signed(good, timestamp="1700000000", nonce="n0nce", encrypt_key="key", body=body)
    assert not is_signed(good, timestamp="1700000001", nonce="n0nce", encrypt_key="key", body=body)
    assert not is_signed("", timestamp="1700000000", nonce="n0nce", encrypt_key="key", body=body)


def test_frames_round_trip_through_the_sdk_schema() -> None:
    ours = Frame(DATA, 33554678, [("type", "event"), ("message_id", "m1"), ("sum", "1")],
                 b'{"code": 200}', seq_id=3, log_id=7, log_id_new="L")  # fmt: skip
    theirs = SdkFrame()
    theirs.ParseFromString(encode(ours))
    assert (theirs.SeqID, theirs.LogID, theirs.service, theirs.method) == (3, 7, 33554678, DATA)
    assert [(h.key, h.value) for h in theirs.headers] == ours.headers
    assert theirs.payload == ours.payload and theirs.LogIDNew == "L"
    theirs.headers.add(key="biz_rt", value="12")
    back = decode(theirs.SerializeToString())
    assert back.header("biz_rt") == "12" and back.payload == ours.payload
    with pytest.raises(FrameError):
        decode(b"\x08\x01")  # fields 2-4 missing


def test_button_values_round_trip() -> None:
    key = ConversationKey("feishu", "t1", Scope.THREAD, "om_root", app="sales")
    assert to_action(stop_value(key)) == Stop(key)
    assert to_action(ask_value("why?", key)) == Ask("why?", key)
    assert to_action({"action": "stop", "scope": "galaxy", "scope_id": "x"}) is None
    assert to_action({"action": "unknown"}) is None
    pressed = to_pressed(load("card_action_button.json"))
    assert pressed is not None and pressed.operator == ASKER
    assert pressed.action == Feedback("default", "dify-msg-1", "", "like")
    form = to_pressed(load("card_action_form.json"))
    assert form is not None and isinstance(form.action, Form)
    assert form.action == Form("pVq3mXc9Lw0aZr1k", "approve",
                               {"reason": "budget ok", "level": "high"})  # fmt: skip
    thread = form_value("r", "a", thread=True)
    assert to_action(thread, {"field_x": ["a", "b"], "other": "y"}) == Form(
        "r", "a", {"x": "a, b"}, thread=True
    )
    assert to_action({"action": "form", "ref": "r"}) is None  # no action id


def test_a_thread_message_goes_as_its_owners_with_its_author() -> None:
    received = to_received(load("event_message_thread_followup.json"))
    message, _ = to_incoming(received, locale="en", owner="ou_owner")
    assert message.user_id == "ou_owner" and message.author == ASKER
    alone, _ = to_incoming(received, locale="en", owner=ASKER)
    assert alone.user_id == ASKER and alone.author_id == ""
